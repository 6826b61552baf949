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
import os
import socket
import subprocess
import sys
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
PAGE = os.sysconf("SC_PAGE_SIZE")


class Server:
    """``python -m backend`` on a free port, API keys on (so auth attacks are real)."""

    def __init__(self, env: dict[str, str]):
        with socket.socket() as s, socket.socket() as m:
            s.bind(("127.0.0.1", 0))
            m.bind(("127.0.0.1", 0))
            self.port, self.metrics_port = s.getsockname()[1], m.getsockname()[1]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
        environ.update({"VISION_HOST": "127.0.0.1", "VISION_PORT": str(self.port), "VISION_WORKERS": "1",
                        "VISION_METRICS_PORT": str(self.metrics_port),
                        "VISION_MODEL_DIR": str(ROOT / "models"), "VISION_LOG_LEVEL": "WARNING", **env})
        self.proc = subprocess.Popen([sys.executable, "-m", "backend"], cwd=ROOT, env=environ,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def http(port: int, raw: bytes, timeout: float = 30.0) -> int:
    """Send raw bytes, return the status (0 = no answer / connection dropped, -1 = non-JSON error)."""
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
        return 0
    if not data:
        return 0
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    status = int(head.split()[1])
    if status >= 400 and "content-type: application/json" not in head:
        return -1
    return status


def post(path: str, body: bytes, key: str | None = KEY, content_type: str = "application/json") -> bytes:
    headers = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
    if key:
        headers += f"X-API-Key: {key}\r\n"
    return (headers + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def b64_json(data: bytes) -> bytes:
    return json.dumps({"base64": base64.b64encode(data).decode()}).encode()


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


def sixteen_bit_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("I;16", (side, side), 1000).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


# -- the attacks ----------------------------------------------------------------------------------

def attack_cases(short: bool):
    """(name, budget per request in CPU-s, list of (raw request bytes, count, concurrency))."""
    n = 1 if short else 4
    side = 2048 if short else 4000
    sample = (ROOT / "samples" / "mnist" / "7-7.png").read_bytes()
    cases = [
        ("progressive JPEG, last scan ×2000", [(post("/predict", b64_json(progressive_jpeg_bomb(2000))), n, n)]),
        (f"{side}² PNG ×8 concurrent", [(post("/predict", b64_json(big_png(side))), 8, 8)]),
        (f"{side}² 16-bit PNG ×8 concurrent", [(post("/predict", b64_json(sixteen_bit_png(side))), 8, 8)]),
        ("batch of 64 × 2048² PNGs",
         [(post("/predict", json.dumps({"instances": [{"base64": base64.b64encode(big_png(2048)).decode()}] * 64})
                .encode()), n, 1)]),
        ("10 MiB of empty instances", [(post("/predict", b'{"instances":[' + b"{}," * 3_400_000 + b"{}]"), n, 1)]),
        ("5,000-digit integer", [(post("/predict", b'{"base64": ' + b"9" * 5000 + b"}"), 4, 1)]),
        ("unauthenticated 19 MiB uploads", [(post("/predict", b"A" * (19 * 2**20), key=None), 6, 6)]),
        ("2,000 made-up methods", [(f"M{i} /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), 1, 1)
                                  for i in range(200 if short else 2000)]),
        ("bad header line / 431 / 501", [(b"GET / HTTP/1.1\r\nBad\r\n\r\n", 5, 1),
                                         (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 300_000 + b"\r\n\r\n", 5, 1),
                                         (b"POST /predict HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 5, 1)]),
        ("1,000 wrong keys", [(post("/predict", b"{}", key=f"wrong-key-{i:08d}-xxxxxxxx"), 1, 1)
                             for i in range(100 if short else 1000)]),
        ("valid predictions (control)", [(post("/predict", b64_json(sample)), 50, 4)]),
    ]
    return cases


def run_case(server: Server, steps) -> dict:
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    peak = [server.rss_mib()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_mib())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0, t0 = process_seconds(server.proc.pid), time.monotonic()
    sent = 0
    for raw, count, concurrency in steps:
        with ThreadPoolExecutor(concurrency) as pool:
            for status in pool.map(lambda _, raw=raw: http(server.port, raw), range(count)):
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        sent += count
    time.sleep(0.2)  # work the server may still do after the last answer counts too
    cpu = process_seconds(server.proc.pid) - cpu0
    stop.set()
    sampler.join()
    return {"requests": sent, "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "cpu_s": round(cpu, 3), "cpu_s_per_request": round(cpu / sent, 4),
            "wall_s": round(time.monotonic() - t0, 2), "peak_rss_mib": round(peak[0], 1)}


def stalled_sockets(server: Server, count: int) -> dict:
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
        time.sleep(3.5)
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
    args = parser.parse_args()
    output = args.output or (RESULTS / ("abuse-short.json" if args.short else "abuse.json"))

    server = Server({"VISION_API_KEYS": KEY, "VISION_READ_TIMEOUT": "2"})
    failures, results = [], {}
    try:
        baseline = server.rss_mib()
        for name, steps in attack_cases(args.short):
            r = run_case(server, steps)
            results[name] = r
            print(f"{name:40s} {r['requests']:5d} req  {r['cpu_s']:7.2f} CPU-s  peak {r['peak_rss_mib']:7.1f} MiB  "
                  f"{r['statuses']}", flush=True)
            if "500" in r["statuses"] or "-1" in r["statuses"] or "0" in r["statuses"]:
                failures.append(f"{name}: a 500, a non-JSON error or no answer: {r['statuses']}")
            if r["cpu_s_per_request"] > 1.0:
                failures.append(f"{name}: {r['cpu_s_per_request']} CPU-s per request (budget 1.0)")
            if r["peak_rss_mib"] > MEMORY_LIMIT_MIB:
                failures.append(f"{name}: peak RSS {r['peak_rss_mib']} MiB (limit {MEMORY_LIMIT_MIB})")
        stalled = stalled_sockets(server, 200 if args.short else 600)
        results["stalled sockets"] = stalled
        print(f"{'stalled sockets':40s} {stalled}", flush=True)
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
    output.write_text(json.dumps({"short": args.short, "load_average": os.getloadavg(), "results": results,
                                  "failures": failures}, indent=2) + "\n")
    print(f"saved {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    for f in failures:
        print("BUDGET EXCEEDED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
