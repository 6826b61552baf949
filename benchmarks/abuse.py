"""Abuse benchmark: every attack we defend against, run against a real backend on loopback.

    .venv/bin/python benchmarks/abuse.py            # full run, saves benchmarks/results/abuse.json
    .venv/bin/python benchmarks/abuse.py --short    # CI: smaller counts, fails (exit 1) past a budget

For each attack it prints the statuses the server answered, the server's CPU seconds (utime+stime of
the whole process tree, from /proc) spent during the attack and the peak RSS of the tree (sampled
every 10 ms). Every loop is bounded in count and time; traffic goes only to 127.0.0.1.

Budgets (from the resource-safety requirements): an attack may not cost more than about 1 CPU-second
per request it sends, the tree must stay under the pod's memory limit (512 MiB), no answer may be a
500 or a non-JSON error, and probes must answer in well under their 1 s timeout while it runs.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import process_seconds, process_tree  # noqa: E402  (a sibling script, not a package)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
KEY = "abuse-benchmark-key-0123456789"
MEMORY_LIMIT_MIB = 512  # the chart's backend memory limit
SPOOL_LIMIT_MIB = 64  # the chart's /tmp emptyDir (medium: Memory, so it also counts against the limit above)
READYZ_BUDGET_MS = 100  # /readyz while an attack runs (the probe's timeout is 1 s)
CPU_BUDGET_S = 1.0  # server CPU seconds per attack request
DOC = ROOT / "docs" / "operations-resource-safety.md"
BEFORE = RESULTS / "abuse-before.json"  # the server before the current defences (see its "commit")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Server:
    """``python -m backend`` on a free port with the pod's settings: one worker, the chart's defaults
    (INFO logs, 10 s read timeout), API keys on (so auth attacks are real) and, where the kernel lets
    an unprivileged user mount one, a private 64 MiB tmpfs as its temp directory — the chart's
    ``/tmp`` emptyDir — so spooled uploads hit the same wall they hit in the pod."""

    def __init__(self, env: dict[str, str]):
        with socket.socket() as s, socket.socket() as m:
            s.bind(("127.0.0.1", 0))
            m.bind(("127.0.0.1", 0))
            self.port, self.metrics_port = s.getsockname()[1], m.getsockname()[1]
        self.spool = Path(tempfile.mkdtemp(prefix="abuse-spool-"))
        self.log = tempfile.NamedTemporaryFile(prefix="abuse-backend-", suffix=".log", delete=False)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
        environ.update({"VISION_HOST": "127.0.0.1", "VISION_PORT": str(self.port), "VISION_WORKERS": "1",
                        "VISION_METRICS_PORT": str(self.metrics_port),
                        "VISION_MODEL_DIR": str(ROOT / "models"), "VISION_LOG_LEVEL": "INFO",
                        "TMPDIR": str(self.spool), **env})
        cmd = [sys.executable, "-m", "backend"]
        self.tmpfs = _can_mount_tmpfs()
        if self.tmpfs:  # unshare execs (no fork): the server keeps this pid
            cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                   f'mount -t tmpfs -o size={SPOOL_LIMIT_MIB}m tmpfs "$TMPDIR" && exec "$@"', "sh", *cmd]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=environ, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("backend did not become ready")

    def rss_mib(self) -> float:
        return sum(int(f[21]) for f in process_tree(self.proc.pid).values()) * PAGE / 2**20

    def spool_mib(self) -> float:
        """Bytes of the server's open files in its temp directory (spooled bodies; unlinked files too)."""
        total = 0
        for pid in process_tree(self.proc.pid):
            fds = Path(f"/proc/{pid}/fd")
            try:
                entries = list(fds.iterdir())
            except OSError:
                continue
            for fd in entries:
                try:
                    if os.readlink(fd).startswith(str(self.spool)):
                        total += os.stat(fd).st_size
                except OSError:
                    continue
        return total / 2**20

    def longest_log_line(self) -> int:
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return max((len(line) for line in f), default=0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        os.unlink(self.log.name)
        shutil.rmtree(self.spool, ignore_errors=True)


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /tmp"], capture_output=True, timeout=10)
    return probe.returncode == 0


def http(port: int, raw: bytes, timeout: float = 60.0, want_headers: bool = False):
    """Send raw bytes, return the status (0 = no answer / connection reset, -1 = non-JSON error);
    with ``want_headers`` also the response head (lower-cased) as a second value."""
    head = ""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            try:
                s.sendall(raw)
            except (BrokenPipeError, ConnectionResetError):  # refused mid-upload: read the answer
                pass
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        data = b""
    status = 0
    if data:
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
        status = int(head.split()[1])
        if status >= 400 and "content-type: application/json" not in head:
            status = -1
    return (status, head) if want_headers else status


def post(path: str, body: bytes, key: str | None = KEY, content_type: str = "application/json",
         extra: str = "") -> bytes:
    headers = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nConnection: close\r\n{extra}"
    if key:
        headers += f"X-API-Key: {key}\r\n"
    return (headers + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def chunked(path: str, body: bytes, chunk: int) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"X-API-Key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk]) for i in range(0, len(body), chunk)]
    return head + b"".join(parts) + b"0\r\n\r\n"


def b64_json(data: bytes) -> bytes:
    return json.dumps({"base64": base64.b64encode(data).decode()}).encode()


def v2_fp32(data: str) -> bytes:
    return (b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,1,28,28],"data":' + data.encode() + b"}]}")


# -- attack payloads ------------------------------------------------------------------------------

def progressive_jpeg_bomb(repeats: int) -> bytes:
    """A small progressive JPEG whose last scan is repeated ``repeats`` times (each a full pass)."""
    # A flat image: its refinement scans compress to a few bytes, yet each is a pass over every pixel.
    img = Image.new("RGB", (2048, 2048), (120, 130, 140))
    buf = io.BytesIO()
    img.save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    last_sos = data.rindex(b"\xff\xda")
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[last_sos:eoi] * repeats + data[eoi:]


def big_png(side: int, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (side, side), 0).save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def noise_png(side: int) -> bytes:
    """An incompressible PNG (~side² bytes): big enough to be spooled, small enough to decode fast."""
    buf = io.BytesIO()
    Image.frombytes("L", (side, side), os.urandom(side * side)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def sixteen_bit_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("I;16", (side, side), 1000).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


# -- attacks that need more than "send N copies of one request" -----------------------------------

def requests(steps):
    """``steps``: (raw request, count, concurrency) → run them all, return the statuses."""
    def attack(server: Server) -> dict:
        statuses: dict[int, int] = {}
        for raw, count, concurrency in steps:
            with ThreadPoolExecutor(concurrency) as pool:
                for status in pool.map(lambda _, raw=raw: http(server.port, raw), range(count)):
                    statuses[status] = statuses.get(status, 0) + 1
        return {"requests": sum(c for _, c, _ in steps), "statuses": statuses}
    return attack


def held_uploads(held: int, held_mib: int, others: int, other_body: bytes):
    """Open ``held`` uploads of ``held_mib`` MiB and keep the last byte back (they stay spooled), then
    send ``others`` complete uploads beside them; finally let the held ones go."""
    def attack(server: Server) -> dict:
        size = held_mib * 2**20
        head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nX-API-Key: {KEY}\r\n"
                f"Content-Length: {size}\r\n\r\n").encode()
        socks, statuses = [], {}

        def hold(_):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            socks.append(s)
            try:
                s.sendall(head + b"\x89PNG\r\n\x1a\n" + b"\0" * (size - 9))
            except OSError:  # refused from the headers, or the server stopped reading (answer read below)
                pass

        try:
            with ThreadPoolExecutor(held) as pool:
                list(pool.map(hold, range(held)))
            time.sleep(0.3)  # let the server write what it received
            with ThreadPoolExecutor(others) as pool:
                for status in pool.map(lambda _: http(server.port, post("/predict", other_body,
                                                                         content_type="image/png")), range(others)):
                    statuses[status] = statuses.get(status, 0) + 1
            held_answers: dict[str, int] = {}
            for s in socks:  # the held ones: answered early (refused), or still waiting for their last byte
                s.settimeout(0.05)
                try:
                    data = s.recv(65536)
                    key = data.split()[1].decode() if data else "closed"
                except (TimeoutError, BlockingIOError):
                    key = "waiting"
                except OSError:
                    key = "reset"
                held_answers[key] = held_answers.get(key, 0) + 1
        finally:
            for s in socks:
                s.close()
        return {"requests": held + others, "statuses": statuses, "held": held_answers}
    return attack


def predict_p50_ms(port: int, body: bytes, seconds: float, stop_early: threading.Event | None = None) -> float:
    raw = post("/predict", body)
    times, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and len(times) < 2000:
        t = time.perf_counter()
        http(port, raw, timeout=10)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def _flood(port: int, raw: bytes, clients: int, seconds: float, honour_retry_after: bool, out) -> None:
    """``clients`` closed-loop senders of ``raw`` for ``seconds`` (in a child process, so their GIL is
    not the one the /predict and /readyz measurements need)."""
    statuses: dict[int, int] = {}
    lock, deadline = threading.Lock(), time.monotonic() + seconds

    def loop():
        while time.monotonic() < deadline:
            status, head = http(port, raw, timeout=30, want_headers=True)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
            if honour_retry_after and "retry-after:" in head:
                retry = float(head.split("retry-after:", 1)[1].split()[0])
                time.sleep(max(0.0, min(retry, deadline - time.monotonic())))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    out.put(statuses)


def explain_flood(clients: int, seconds: float, image: bytes, honour_retry_after: bool):
    """``clients`` closed-loop explain senders for ``seconds`` while one client measures /predict."""
    def attack(server: Server) -> dict:
        sample = (ROOT / "samples" / "mnist" / "7-7.png").read_bytes()
        before = predict_p50_ms(server.port, b64_json(sample), 2.0)
        raw = post("/v1/models/mnist/explain", b64_json(image))
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        flood = ctx.Process(target=_flood, args=(server.port, raw, clients, seconds + 0.5, honour_retry_after, out))
        flood.start()
        time.sleep(0.5)
        during = predict_p50_ms(server.port, b64_json(sample), seconds)
        statuses = out.get(timeout=seconds + 90)
        flood.join(30)
        return {"requests": sum(statuses.values()), "statuses": statuses,
                "predict_p50_ms": {"before": before, "during": during}, "predict_p50_ratio": round(during / before, 2)}
    return attack


def echoed_request_id(length: int):
    def attack(server: Server) -> dict:
        status, head = http(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-ID: "
                            + b"r" * length + b"\r\n\r\n", want_headers=True)
        echoed = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                       if line.startswith("x-request-id:")), "")
        return {"requests": 1, "statuses": {status: 1}, "echoed_request_id_chars": len(echoed)}
    return attack


def long_user_agent(length: int):
    def attack(server: Server) -> dict:
        status = http(server.port, f"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: "
                      f"{'u' * length}\r\n\r\n".encode())
        time.sleep(0.2)
        return {"requests": 1, "statuses": {status: 1}, "longest_log_line": server.longest_log_line()}
    return attack


# -- the attacks ----------------------------------------------------------------------------------

def attack_cases(short: bool):
    """(name, attack(server) → dict, budgets) — budgets: readyz (the probe budget applies), p50_ratio."""
    n = 1 if short else 4
    side = 2048 if short else 4000
    sample = (ROOT / "samples" / "mnist" / "7-7.png").read_bytes()
    empty_arrays = b"[" + b"[]," * (10 * 2**20 // 3 - 100) + b"[]]"
    long_int = "[" + "9" * 400 + "," + ",".join(["0"] * 783) + "]"
    v2_header = (b"POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: "
                 + KEY.encode() + b"\r\nInference-Header-Content-Length: \xb2\r\nContent-Length: 2\r\n\r\n{}")
    probe = {"readyz": True}
    cases = [
        ("progressive JPEG, last scan ×2000",
         requests([(post("/predict", b64_json(progressive_jpeg_bomb(2000))), n, n)]), {}),
        (f"{side}² PNG ×8 concurrent", requests([(post("/predict", b64_json(big_png(side))), 8, 8)]), probe),
        (f"{side}² 16-bit PNG ×8 concurrent",
         requests([(post("/predict", b64_json(sixteen_bit_png(side))), 8, 8)]), probe),
        ("batch of 64 × 2048² PNGs",
         requests([(post("/predict", json.dumps({"instances": [{"base64": base64.b64encode(big_png(2048)).decode()}]
                                                 * 64}).encode()), n, 1)]), {}),
        ("10 MiB of empty instances",
         requests([(post("/predict", b'{"instances":[' + b"{}," * 3_400_000 + b"{}]"), n, 1)]), {}),
        ("5,000-digit integer", requests([(post("/predict", b'{"base64": ' + b"9" * 5000 + b"}"), 4, 1)]), {}),
        ("unquoted base64 fallback: 4,500 spaces",
         requests([(post("/predict", b'{"base64": ' + b" " * 4500), 1, 1)]), probe),
        ("unquoted base64 fallback on explain: 2,500 spaces",
         requests([(post("/v1/models/mnist/explain", b'{"base64": ' + b" " * 2500), 1, 1)]), probe),
        ("v2 infer, 10 MiB of [],[],… ×8 concurrent",
         requests([(post("/v2/models/mnist/infer", v2_fp32(empty_arrays.decode())), 8, 8)]), probe),
        ("3 MiB body in 1-byte chunks",
         requests([(chunked("/predict", b'{"base64":"' + b"A" * (3 * 2**20) + b'"}', 1), 1, 1)]), probe),
        (f"{side}² 16-bit PNG explains ×8 concurrent",
         requests([(post("/v1/models/mnist/explain", b64_json(sixteen_bit_png(side))), 8, 8)]), probe),
        ("32 explain clients (honour Retry-After)",
         explain_flood(32, 3.0 if short else 10.0, sample, honour_retry_after=True), {**probe, "p50_ratio": 2.0}),
        ("32 explain clients (ignore Retry-After)",
         explain_flood(32, 3.0 if short else 10.0, sample, honour_retry_after=False), {}),
        ("7 held-open 9 MiB uploads + 4 other 1 MiB uploads", held_uploads(7, 9, 4, noise_png(1024)), probe),
        ("40 × 19 MiB bodies", requests([(post("/predict", b"\x89PNG\r\n\x1a\n" + b"A" * (19 * 2**20)), 40 if not short
                                          else 10, 8)]), probe),
        ("unauthenticated 19 MiB uploads", requests([(post("/predict", b"A" * (19 * 2**20), key=None), 6, 6)]), {}),
        ("v2 infer, a 400-digit number in data", requests([(post("/v2/models/mnist/infer", v2_fp32(long_int)), 4, 1)]),
         probe),
        ("v2 infer, non-ASCII Inference-Header-Content-Length", requests([(v2_header, 4, 1)]), probe),
        ("10,000-character X-Request-ID", echoed_request_id(10_000), {}),
        ("200 KB User-Agent", long_user_agent(200_000), {}),
        ("2,000 made-up methods", requests([(f"M{i} /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                             .encode(), 1, 1) for i in range(200 if short else 2000)]), {}),
        ("bad header line / 431 / 501",
         requests([(b"GET / HTTP/1.1\r\nBad\r\n\r\n", 5, 1),
                   (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 300_000 + b"\r\n\r\n", 5, 1),
                   (b"POST /predict HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 5, 1)]), {}),
        ("1,000 wrong keys", requests([(post("/predict", b"{}", key=f"wrong-key-{i:08d}-xxxxxxxx"), 1, 1)
                                       for i in range(100 if short else 1000)]), {}),
        ("valid predictions (control)", requests([(post("/predict", b64_json(sample)), 50, 4)]), {}),
    ]
    return cases


class Probe:
    """GET /readyz every 50 ms on a fresh connection while an attack runs (what the kubelet sees)."""

    def __init__(self, port: int):
        self.port, self.times, self.failures = port, [], 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                ok = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status == 200
            except OSError:
                ok = False
            self.times.append((time.perf_counter() - t) * 1000)
            self.failures += not ok
            self.stop.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)

    def summary(self) -> dict:
        return {"probes": len(self.times), "max_ms": round(max(self.times, default=0), 1),
                "p50_ms": round(statistics.median(self.times), 1) if self.times else 0, "failed": self.failures}


def run_case(server: Server, attack) -> dict:
    peak, spool = [server.rss_mib()], [server.spool_mib()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_mib())
            spool[0] = max(spool[0], server.spool_mib())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0, t0 = process_seconds(server.proc.pid), time.monotonic()
    with Probe(server.port) as probe:
        r = attack(server)
        time.sleep(0.2)  # work the server may still do after the last answer counts too
    cpu = process_seconds(server.proc.pid) - cpu0
    stop.set()
    sampler.join()
    sent = max(1, r.pop("requests"))
    return {"requests": sent, "statuses": {str(k): v for k, v in sorted(r.pop("statuses").items())},
            "cpu_s": round(cpu, 3), "cpu_s_per_request": round(cpu / sent, 4),
            "wall_s": round(time.monotonic() - t0, 2), "peak_rss_mib": round(peak[0], 1),
            "peak_spool_mib": round(spool[0], 1), "readyz": probe.summary(), **r}


def check(name: str, r: dict, budgets: dict) -> list[str]:
    failures = []
    if {"500", "-1", "0"} & set(r["statuses"]):
        failures.append(f"{name}: a 500, a non-JSON error or no answer: {r['statuses']}")
    if r["cpu_s_per_request"] > CPU_BUDGET_S:
        failures.append(f"{name}: {r['cpu_s_per_request']} CPU-s per request (budget {CPU_BUDGET_S})")
    if r["peak_rss_mib"] + r["peak_spool_mib"] > MEMORY_LIMIT_MIB:
        failures.append(f"{name}: peak RSS {r['peak_rss_mib']} MiB + spool {r['peak_spool_mib']} MiB "
                        f"(limit {MEMORY_LIMIT_MIB})")
    if r["peak_spool_mib"] > SPOOL_LIMIT_MIB or "reset" in r.get("held", {}):
        failures.append(f"{name}: spooled {r['peak_spool_mib']} MiB (the pod's /tmp is {SPOOL_LIMIT_MIB} MiB)")
    if budgets.get("readyz") and (r["readyz"]["max_ms"] > READYZ_BUDGET_MS or r["readyz"]["failed"]):
        failures.append(f"{name}: /readyz {r['readyz']} (budget {READYZ_BUDGET_MS} ms)")
    if "p50_ratio" in budgets and r["predict_p50_ratio"] > budgets["p50_ratio"]:
        failures.append(f"{name}: /predict p50 {r['predict_p50_ms']} ({r['predict_p50_ratio']}×, "
                        f"budget {budgets['p50_ratio']}×)")
    if r.get("echoed_request_id_chars", 0) > 128:
        failures.append(f"{name}: a {r['echoed_request_id_chars']}-character request id echoed")
    if r.get("longest_log_line", 0) > 8192:
        failures.append(f"{name}: a {r['longest_log_line']}-byte log line")
    return failures


def describe(budgets: dict) -> str:
    text = f"≤ {CPU_BUDGET_S:g} CPU-s/request, ≤ {MEMORY_LIMIT_MIB} MiB, JSON answers"
    if budgets.get("readyz"):
        text += f", /readyz < {READYZ_BUDGET_MS} ms"
    if "p50_ratio" in budgets:
        text += f", /predict p50 ≤ {budgets['p50_ratio']:g}×"
    return text


def _cell(r: dict | None) -> str:
    """One run of one attack: answers (status×count; 0 = no answer or reset), server CPU-s, peak RSS
    (+ spooled MiB), slowest /readyz."""
    if not r:
        return "—"
    answers = ", ".join(f"{'reset' if k == '0' else k}×{v}" for k, v in r["statuses"].items())
    spooled = f" + {r['peak_spool_mib']:.0f} spooled" if r["peak_spool_mib"] >= 1 else ""
    memory = f"{r['peak_rss_mib']:.0f} MiB{spooled}"
    readyz = r["readyz"]
    probe = f"{readyz['max_ms']:.0f} ms" + (f" ({readyz['failed']} failed)" if readyz["failed"] else "")
    extra = ""
    if "predict_p50_ms" in r:
        extra = f"; /predict p50 {r['predict_p50_ms']['before']:g} → {r['predict_p50_ms']['during']:g} ms"
    if "longest_log_line" in r:
        extra = f"; longest log line {r['longest_log_line']:,} B"
    if "echoed_request_id_chars" in r:
        extra = f"; id echoed {r['echoed_request_id_chars']} chars"
    return f"{answers} · {r['cpu_s']:g} CPU-s · {memory} · /readyz {probe}{extra}"


def markdown_table(before: dict, after: dict) -> str:
    """The resource-safety table of docs/operations-resource-safety.md, from two result files."""
    lines = ["| attack | requests | budget | before | after |", "| --- | ---: | --- | --- | --- |"]
    for name, r in after["results"].items():
        if not isinstance(r, dict) or "statuses" not in r:
            continue
        lines.append(f"| {name} | {r['requests']:,} | {r.get('budget', '')} | {_cell(before['results'].get(name))} "
                     f"| {_cell(r)} |")
    if "stalled sockets" in after["results"]:
        cells = [_stalled_cell(run["results"].get("stalled sockets")) for run in (before, after)]
        count = after["results"]["stalled sockets"]["stalled"]
        lines.append(f"| {count:,} half-sent requests held open, then the probes | {count:,} | probes answer, "
                     f"every socket cut at the read deadline | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def _stalled_cell(r: dict | None) -> str:
    if r is None:
        return "—"
    probes = ", ".join(f"`{path}` {p['status'] or 'no answer'} in {p['ms']:g} ms" for path, p in r["probes"].items())
    return f"{probes}; {r['answered_or_closed_after_deadline']:,} cut at the deadline"


def write_docs(before: dict, after: dict, check: bool = False) -> int:
    """Rewrite (or with ``check``, compare) the resource-safety table from these results."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import docblock  # scripts/, the shared doc-block writer

    return docblock.write(DOC, "abuse-table", markdown_table(before, after), check=check,
                          script="../benchmarks/abuse.py --docs")


def stalled_sockets(server: Server, count: int, read_timeout: float) -> dict:
    """Hold ``count`` half-sent requests open, then time the probes."""
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            socks.append(s)
        times = {}
        for path in ("/healthz", "/readyz"):
            t = time.monotonic()
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5).status
            except OSError:  # locked out: what a kubelet probe would see
                status = 0
            times[path] = {"status": status, "ms": round((time.monotonic() - t) * 1000, 1)}
        # The deadline then closes them: count how many the server has cut after read_timeout + 2 s.
        time.sleep(read_timeout + 2)
        closed = 0
        for s in socks:
            s.settimeout(0.01)
            try:
                closed += s.recv(1) != b"" or 1
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                closed += 1
        return {"stalled": count, "probes": times, "answered_or_closed_after_deadline": closed}
    finally:
        for s in socks:
            s.close()


def metric_series(server: Server, prefix: str) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    return sum(1 for line in text.splitlines() if line.startswith(prefix))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="smaller counts (CI); still enforces the budgets")
    parser.add_argument("--output", type=Path, default=None, help="JSON path [benchmarks/results/abuse.json]")
    parser.add_argument("--only", default="", help="run only the attacks whose name contains this text")
    parser.add_argument("--docs", action="store_true",
                        help=f"only rewrite the table in {DOC.relative_to(ROOT)} from {BEFORE.relative_to(ROOT)} "
                             "and the --output results (a full run writes it too)")
    args = parser.parse_args()
    output = args.output or (RESULTS / ("abuse-short.json" if args.short else "abuse.json"))
    if args.docs:
        return write_docs(json.loads(BEFORE.read_text()), json.loads(output.read_text()))

    read_timeout = 10.0  # the pod's VISION_READ_TIMEOUT (the chart keeps the default)
    server = Server({"VISION_API_KEYS": KEY})
    failures, results = [], {}
    try:
        baseline = server.rss_mib()
        for name, attack, budgets in attack_cases(args.short):
            if args.only and args.only not in name:
                continue
            r = run_case(server, attack)
            r["budget"] = describe(budgets)
            results[name] = r
            extra = {k: v for k, v in r.items() if k in ("held", "predict_p50_ms", "echoed_request_id_chars",
                                                          "longest_log_line")}
            print(f"{name:52s} {r['requests']:5d} req  {r['cpu_s']:7.2f} CPU-s  peak {r['peak_rss_mib']:7.1f} MiB  "
                  f"spool {r['peak_spool_mib']:5.1f} MiB  readyz max {r['readyz']['max_ms']:7.1f} ms  "
                  f"{r['statuses']} {extra or ''}", flush=True)
            failures += check(name, r, budgets)
        if not args.only:
            stalled = stalled_sockets(server, 200 if args.short else 600, read_timeout)
            results["stalled sockets"] = stalled
            print(f"{'stalled sockets':52s} {stalled}", flush=True)
            if any(p["status"] != 200 or p["ms"] > 500 for p in stalled["probes"].values()):
                failures.append(f"probes slow or failing behind stalled sockets: {stalled['probes']}")
            series = metric_series(server, "vision_http_requests_total{")
            results["request series after attacks"] = series
            if series > 60:
                failures.append(f"{series} vision_http_requests_total series: methods are not bounded")
        time.sleep(1.0)
        results["rss_mib"] = {"baseline": round(baseline, 1), "after": round(server.rss_mib(), 1)}
        print(f"RSS baseline {baseline:.1f} MiB, after {results['rss_mib']['after']} MiB")
    finally:
        server.stop()

    output.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    output.write_text(json.dumps({"commit": commit.strip(), "short": args.short, "tmpfs_spool": server.tmpfs,
                                  "load_average": os.getloadavg(),
                                  "results": results, "failures": failures}, indent=2, ensure_ascii=False) + "\n")
    print(f"saved {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    if not args.short and not args.only and args.output is None:
        write_docs(json.loads(BEFORE.read_text()), json.loads(output.read_text()))
        print(f"table written to {DOC.relative_to(ROOT)}")
    for f in failures:
        print("BUDGET EXCEEDED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
