"""Where a ``POST /predict`` spends its CPU, stage by stage, on the real server under load.

    .venv/bin/python benchmarks/cpu_budget.py --label before     # saves benchmarks/results/cpu_budget.json
    .venv/bin/python benchmarks/cpu_budget.py --label after --duration 10
    .venv/bin/python benchmarks/cpu_budget.py --doc              # docs/performance.md's table from the JSON

Starts the backend as ``visionctl serve`` does (``VISION_WORKERS=auto``, access log on, metrics on),
loads it with wrk at each concurrency (the 4 digits benchmarks/peers.py sends) and samples every
worker with ``py-spy record --subprocesses --nonblocking --format raw`` meanwhile: py-spy counts only
threads that are on a CPU, so a stage's share of the samples is its share of the server's CPU. The
shares times the server's CPU per request (utime+stime of its process tree from /proc, same window)
give microseconds per request per stage:

parse (the JSON body), decode (base64 + image decode), preprocess (digit fitting to 28×28), inference
(ONNX Runtime and the batcher), postprocess (probabilities → answer, OOD verdict), serialisation (JSON
response), logging (the access log), metrics (prometheus_client), framework (Waitress, Flask,
Werkzeug, the request hooks) and other (interpreter, GC, threads).

A stack counts for the outermost stage it enters, so the JSON encoding inside the access log is
logging and the metrics updated from a hook are metrics. Samples of threads blocked in a wait (a lock,
a queue, poll) are left out: py-spy's idle detection does not catch them here. Time a thread spends
waiting for the GIL still counts for the line it waits on. The profile stays in the JSON (``--keep``
writes the raw stacks to a file) so the classification can be checked.
"""

from __future__ import annotations

import argparse
import json
import linecache
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT), str(ROOT / "scripts")]

from load import machine_busy_seconds, process_tree  # noqa: E402  (sibling script)

OUT = ROOT / "benchmarks" / "results" / "cpu_budget.json"
DOC = ROOT / "docs" / "performance.md"
STAGES = ("parse", "decode", "preprocess", "inference", "postprocess", "serialisation", "logging", "metrics",
          "framework", "other")
# (stage, frame pattern): the first pattern, from the outermost frame in, that matches decides.
P = r"\((?:.*/)?"  # a frame's file, as py-spy prints it: "func (backend/web/api.py:72)" or an absolute path
RULES = [
    ("logging", re.compile(P + r"(logging/|backend/(.*/)?logs\.py:)")),
    ("metrics", re.compile(P + r"(prometheus_client/|backend/(.*/)?metrics\.py:)")),
    ("parse", re.compile(P + r"backend/(.*/)?bodies\.py:")),
    ("decode", re.compile(P + r"backend/(.*/)?decoding\.py:")),
    ("preprocess", re.compile(P + r"backend/(.*/)?preprocessing\.py:")),
    ("inference", re.compile(P + r"(backend/(.*/)?inference\.py:|onnxruntime/)")),
    ("postprocess", re.compile(P + r"backend/(.*/)?verdict\.py:")),
    # The pipeline's last stage (verdict + the prediction series) is postprocessing; its other
    # stages are glue around decode/preprocess/inference, which the rules above find inside them.
    ("postprocess", re.compile(r"^postprocess " + P + r"backend/(.*/)?pipeline\.py:")),
    ("serialisation", re.compile(P + r"backend/(.*/)?responses\.py:")),
]
FRAMEWORK = re.compile(P + r"(waitress|flask|werkzeug|backend)/")
PREDICT_OWN = re.compile(r"^_predict " + P + r"backend/")  # the answer built in the route itself


def classify(frames: list[str]) -> str:
    for frame in frames:  # outermost first
        for stage, pattern in RULES:
            if pattern.search(frame):
                return stage
    leaf_backend = next((f for f in reversed(frames) if "backend/" in f), None)
    if leaf_backend and PREDICT_OWN.search(leaf_backend):
        return "postprocess"
    if any(FRAMEWORK.search(f) for f in frames):
        return "framework"
    return "other"


# A thread whose innermost Python line is one of these is blocked, not computing: py-spy's own idle
# detection does not see it here (it samples such threads too), so these samples are dropped.
WAITING = re.compile(r"(\.acquire\(|\.wait\(|_queue\.get\(|\bqueue\.get\(|\.poll\(|\bselect\(|\bsleep\()")
FRAME = re.compile(r"\((.+):(\d+)\)$")


@cache
def source_line(path: str, line: int) -> str:
    """The text of ``path:line`` (py-spy prints paths relative to a sys.path entry)."""
    for base in ("", str(ROOT), *sys.path):
        text = linecache.getline(os.path.join(base, path), line)
        if text:
            return text
    return ""


def waiting(frame: str) -> bool:
    match = FRAME.search(frame)
    return bool(match and WAITING.search(source_line(match.group(1), int(match.group(2)))))


def parse_raw(text: str) -> tuple[Counter, int]:
    """py-spy's raw (collapsed) output — ``frame;frame;... count`` per line, outermost first — as samples
    per stage, and the number of samples of blocked threads left out."""
    stages: Counter = Counter()
    idle = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames and waiting(frames[-1]):
            idle += int(count)
            continue
        stages[classify(frames)] += int(count)
    return stages, idle


def tree_seconds(pid: int) -> float:
    ticks = sum(int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]) for f in process_tree(pid).values())
    return ticks / os.sysconf("SC_CLK_TCK")


def py_spy() -> str | None:
    """py-spy from PATH or beside this interpreter (the venv's bin/)."""
    near = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(near) if near.exists() else None)


def measure(server, concurrency: int, duration: float, script: Path, bodies: str, work: Path) -> dict:
    raw = work / f"c{concurrency}.txt"
    env = {**os.environ, "BENCH_BODIES": bodies}
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{round(duration)}s", "--timeout", "5s", "-s", str(script),
           server.url + "/predict"]
    pid = server.proc.pid
    cpu0, busy0 = tree_seconds(pid), machine_busy_seconds()
    spy = subprocess.Popen([py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                            "--rate", "250", "--duration", str(round(duration)), "--format", "raw",
                            "--output", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    spy.wait(60)
    cpu, busy = tree_seconds(pid) - cpu0, machine_busy_seconds() - busy0
    result = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    ok = result["requests"] - result["errors"]["status"]
    stages, idle = parse_raw(raw.read_text())
    total = sum(stages.values())
    us = cpu / ok * 1e6
    return {"concurrency": concurrency, "requests_ok": ok, "rps": round(ok / (result["duration_us"] / 1e6), 1),
            "server_cpu_us_per_request": round(us, 1), "samples": total, "blocked_samples_left_out": idle,
            "other_processes_cpu_s": round(max(0.0, busy - cpu), 2),
            "stages_us": {s: round(us * stages[s] / total, 1) for s in STAGES},
            "stages_share": {s: round(stages[s] / total, 4) for s in STAGES}}


def markdown_table(saved: dict) -> str:
    """µs of server CPU per request by stage, each saved label side by side, at each concurrency."""
    labels = list(saved)
    levels = [r["concurrency"] for r in saved[labels[0]]["runs"]]
    head = " | ".join(f"{label} c={c}" for c in levels for label in labels)
    lines = [f"| stage | {head} |", "| --- |" + " ---: |" * (len(labels) * len(levels))]

    def cell(label, c, stage):
        run = next(r for r in saved[label]["runs"] if r["concurrency"] == c)
        if stage == "total":
            return f"**{run['server_cpu_us_per_request']:,.0f}**"
        return f"{run['stages_us'][stage]:,.0f} ({run['stages_share'][stage]:.0%})"

    for stage in (*STAGES, "total"):
        lines.append(f"| {stage} | " + " | ".join(cell(label, c, stage) for c in levels for label in labels) + " |")
    when = ", ".join(f"{label}: {saved[label]['created']} at {saved[label]['commit']}" for label in labels)
    return "\n".join(lines) + f"\n\nµs of server CPU per request (share of the py-spy samples); {when}."


def write_doc(saved: dict, check: bool = False) -> int:
    import docblock  # scripts/

    return docblock.write(DOC, "cpu-budget", markdown_table(saved), check=check,
                          script="../benchmarks/cpu_budget.py --doc")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", help="the key in the JSON, e.g. before / after")
    parser.add_argument("--doc", action="store_true", help="only rewrite docs/performance.md's table from the JSON")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--env", action="append", default=[], help="extra VISION_*=value for the server")
    parser.add_argument("--keep", help="folder to keep py-spy's raw stacks in")
    args = parser.parse_args()
    if args.doc:
        return write_doc(json.loads(Path(args.out).read_text()))
    if not args.label:
        parser.error("--label is required to measure")
    if not shutil.which("wrk") or not py_spy():
        print("needs wrk (apt-get install wrk) and py-spy (pip install py-spy)", file=sys.stderr)
        return 2
    from peers import load_files

    from devkit.backend_server import BackendServer

    work = Path(tempfile.mkdtemp(prefix="vision-budget-"))
    script, bodies = load_files(work, prefix="body-")
    env = {"VISION_WORKERS": "auto", **dict(e.split("=", 1) for e in args.env)}
    server = BackendServer(env=env).start()
    runs = []
    try:
        for c in (int(x) for x in args.concurrency.split(",")):
            subprocess.run(["wrk", "-t1", f"-c{c}", "-d2s", "-s", str(script), server.url + "/predict"],
                           env={**os.environ, "BENCH_BODIES": bodies}, capture_output=True, check=True)
            r = measure(server, c, args.duration, script, bodies, work)
            runs.append(r)
            print(f"c={c}: {r['rps']} req/s, {r['server_cpu_us_per_request']} µs CPU/request, {r['samples']} samples")
            for s in STAGES:
                print(f"  {s:14} {r['stages_us'][s]:8.1f} µs  {r['stages_share'][s]:6.1%}")
    finally:
        server.stop()
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {}
    saved[args.label] = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "server_env": env,
                         "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                  capture_output=True, text=True).stdout.strip(),
                         "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n")
    print(f"saved {out} [{args.label}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
