"""Model handover under load: refuse a worse candidate, promote a good one, roll back a breach.

A real ``visionctl serve --models-dir <copy of models/>`` (2 workers) takes a bounded load loop
(keep-alive clients, each request from one of 200 client ids so the canary share is sticky) for the
whole run, while ``visionctl release`` drives the handover with three candidates exported from the
shipped weights (``devkit.candidates``):

1. ``worse``  — the gate refuses it (golden-set accuracy vs floor), ``release start`` exits 1;
2. ``good``   — canary 30 %: the judge promotes it once enough traffic agreed with stable;
3. ``biased`` — passes the gate, but on cut-off digits it disagrees with stable. During this phase the
   traffic turns into cut-off digits only (a camera that crops the left half: the inputs changed),
   and the judge rolls it back on the breach;
4. by hand: ``release rollback`` (back to the previous stable) and ``start`` + ``promote`` again.

Every status code the load loop saw is counted per phase; any non-200 fails the run.

    .venv/bin/python benchmarks/releases.py            # saves benchmarks/results/releases.json
    .venv/bin/python benchmarks/releases.py --short    # CI: shorter judge windows, same checks
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit import candidates  # noqa: E402
from devkit.backend_server import free_port  # noqa: E402
from devkit.paths import DATASETS  # noqa: E402
from visionctl.ml.data import load_split  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "releases.json"
CLIENT_IDS = 200


def png(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def traffic(data_dir: Path, count: int = 400, cut_every: int = 4) -> list[bytes]:
    """Request bodies: test images that are not in the golden set; every ``cut_every``-th one with its
    left half cut off (a digit partly outside the camera frame: live traffic is not as clean as a test
    set; 1 = all of them)."""
    test = load_split("mnist", "test", data_dir / "mnist")
    index = np.arange(5, len(test.labels), 10)[:count]
    bodies = []
    for i, k in enumerate(index):
        img = test.images[k]
        if i % cut_every == cut_every - 1:
            img = np.where(np.arange(28)[None, :] < 14, 0, img)
        bodies.append(json.dumps({"base64": png(img)}).encode())
    return bodies


class Load:
    """``clients`` keep-alive loops, bounded by ``max_requests`` and by stop()."""

    def __init__(self, port: int, bodies: list[bytes], clients: int = 4, max_requests: int = 200_000):
        self.port, self.bodies, self.max_requests = port, bodies, max_requests
        self.lock = threading.Lock()
        self.codes: Counter = Counter()
        self.versions: Counter = Counter()
        self.sent = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(clients)]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def snapshot(self) -> tuple[Counter, Counter]:
        with self.lock:
            return Counter(self.codes), Counter(self.versions)

    def _loop(self, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        rng = random.Random(n)
        i = n
        while not self.stopping.is_set():
            with self.lock:
                if self.sent >= self.max_requests:
                    return
                self.sent += 1
            body = self.bodies[i % len(self.bodies)]
            headers = {"Content-Type": "application/json", "X-Client-ID": f"client-{rng.randrange(CLIENT_IDS)}"}
            try:
                conn.request("POST", "/predict", body, headers)
                resp = conn.getresponse()
                data = resp.read()
                code = resp.status
                version = json.loads(data).get("model_version") if code == 200 else None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                code, version = f"error:{type(exc).__name__}", None
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self.lock:
                self.codes[str(code)] += 1
                if version:
                    self.versions[version] += 1
            i += 4


def visionctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visionctl", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}, timeout=120)


def status(models: Path) -> dict:
    proc = visionctl("release", "status", "mnist", "--json", "--models-dir", str(models))
    return json.loads(proc.stdout)


def wait_for(models: Path, action: str, after: int, timeout: float) -> dict | None:
    """The first history entry with ``action`` after index ``after`` (None on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = status(models)["history"]
        for entry in history[after:]:
            if entry["action"] == action:
                return entry
        time.sleep(0.5)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="CI: shorter judge windows")
    parser.add_argument("--data-dir", type=Path, default=DATASETS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    min_seconds = 5 if args.short else 20
    judge_policy = ["--policy", f"min_seconds={min_seconds}", "--policy", "min_requests=200"]

    work = Path(tempfile.mkdtemp(prefix="releases-bench-"))
    models = work / "models"
    models.mkdir()
    for f in ROOT.glob("models/*.onnx"):
        shutil.copy(f, models)
    for f in ROOT.glob("models/*.json"):
        shutil.copy(f, models)
    made = {k: candidates.make(k, work / k, args.data_dir) for k in candidates.KINDS}
    version = {k: json.loads((d / "mnist.json").read_text())["version"] for k, d in made.items()}
    port = free_port()
    log = open(work / "serve.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "visionctl", "serve", "--models-dir", str(models), "--port",
                               str(port), "--workers", "2", "--log-level", "WARNING"], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              process_group=0)
    phases, failures = [], []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        base = status(models)["stable"]
        load = Load(port, traffic(args.data_dir)).start()
        started = time.monotonic()

        def phase(name: str, fn) -> None:
            codes0, versions0 = load.snapshot()
            t0 = time.monotonic()
            detail = fn()
            codes1, versions1 = load.snapshot()
            row = {"phase": name, "seconds": round(time.monotonic() - t0, 2),
                   "status_codes": dict(codes1 - codes0), "requests": sum((codes1 - codes0).values()),
                   "served_by_version": dict(versions1 - versions0), **detail}
            phases.append(row)
            print(json.dumps(row), flush=True)

        def warm():
            time.sleep(2)
            return {}

        def refuse():
            proc = visionctl("release", "start", "mnist", str(made["worse"]), "--models-dir", str(models))
            time.sleep(2)
            entry = status(models)["history"][-1]
            if proc.returncode != 1 or entry["action"] != "refused":
                failures.append(f"worse candidate: exit {proc.returncode}, last action {entry['action']}")
            return {"exit_code": proc.returncode, "message": " ".join(proc.stderr.split()), "decision": entry}

        def release(kind: str, action: str):
            def run():
                n = len(status(models)["history"])
                proc = visionctl("release", "start", "mnist", str(made[kind]), "--weight", "30",
                                 "--models-dir", str(models), *judge_policy)
                if proc.returncode != 0:
                    failures.append(f"{kind}: start exited {proc.returncode}: {proc.stderr}")
                    return {"exit_code": proc.returncode}
                t0 = time.monotonic()
                entry = wait_for(models, action, n + 1, 120)
                if entry is None or not entry["actor"].startswith("judge"):
                    failures.append(f"{kind}: no automatic {action} ({entry})")
                time.sleep(2)
                return {"exit_code": 0, "gate": status(models)["versions"][version[kind]].get("gate"),
                        "decision_after_seconds": round(time.monotonic() - t0 - 2, 1), "decision": entry}
            return run

        def by_hand():
            out = {}
            for step in (["rollback"], ["start", str(made["good"]), "--policy", "auto=false", "--weight", "50"],
                         ["promote"]):
                proc = visionctl("release", step[0], "mnist", *step[1:], "--models-dir", str(models))
                if proc.returncode != 0:
                    failures.append(f"{step[0]} by hand exited {proc.returncode}: {proc.stderr}")
                time.sleep(3)
                out[step[0]] = status(models)["history"][-1]
            return out

        phase("baseline", warm)
        phase("worse candidate refused by the gate", refuse)
        phase("good candidate promoted by the judge", release("good", "promote"))
        mixed, load.bodies = load.bodies, traffic(args.data_dir, cut_every=1)
        phase("biased candidate rolled back by the judge", release("biased", "rollback"))
        load.bodies = mixed
        phase("rollback, start and promote by hand", by_hand)
        load.stop()
        codes, versions = load.snapshot()
        total = sum(codes.values())
        bad = {c: n for c, n in codes.items() if c != "200"}
        if bad:
            failures.append(f"non-200 answers during the run: {bad}")
        results = {"short": args.short, "server": {"workers": 2, "clients": len(load.threads)},
                   "versions": {"base": base, **version}, "policy_overrides": judge_policy[1::2],
                   "seconds": round(time.monotonic() - started, 1), "requests": total, "status_codes": dict(codes),
                   "served_by_version": dict(versions), "failed_requests": sum(bad.values()), "phases": phases,
                   "final": status(models)["stable"]}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{total} requests, status codes {dict(codes)}; saved {args.out}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        print((work / "serve.log").read_text()[-3000:], file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
