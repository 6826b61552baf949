"""What the serving stack costs before any model work: server CPU per request of a bare Waitress, of
Flask on Waitress, and of the backend with one worker — same body, same load, one process each.

    .venv/bin/python benchmarks/stack_floor.py            # 3 rounds × 8 s per server and concurrency
    .venv/bin/python benchmarks/stack_floor.py --short    # 1 round × 2 s (a smoke run, no bars)
    .venv/bin/python benchmarks/stack_floor.py --doc      # docs/performance.md's table from the saved JSON

The peers comparison (``peers.py``) says how far the backend is from the fastest framework; this says
where the distance can and cannot come from. Subtracting rows splits a request: Waitress alone (HTTP
parsing, the task queue, socket writes), what Flask adds (request context, routing, the Response),
and what the backend adds on top (its hooks, the pipeline, the batcher thread and the model). Waitress
runs in every row with the backend's 8 threads, so the floor is what the design (Flask on Waitress)
costs whatever is inside it. wrk POSTs the peers' 4 MNIST digits as base64 PNG in JSON; only 200s
count; CPU is utime+stime of the server process from /proc.

In process, without HTTP: the backend's Flask app called directly (a WSGI environ per request, the
shipped models, multiprocess metrics and the access log on) from 1 and from 8 threads at once —
process CPU per request. The difference is what threads of one process cost each other (the GIL
hand-offs around every C call that releases it, and the batcher's). Saves
benchmarks/results/stack_floor.json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "scripts")]

import docblock  # noqa: E402  (scripts/, the shared doc-block writer)
from peers import SAMPLES, Server, Vision, load_files, run_wrk  # noqa: E402

OUT = HERE / "results" / "stack_floor.json"
DOC = HERE.parent / "docs" / "performance.md"
CONCURRENCY = (8, 32)


def inprocess(threads: int, requests: int) -> dict:
    """Process CPU per ``POST /predict`` with ``threads`` callers at once, no HTTP (median of 3 runs)."""
    from hot_path import _inproc_client

    app = _inproc_client(HERE.parent / "models").application
    data = json.dumps({"base64": base64.b64encode(SAMPLES[2].read_bytes()).decode()}).encode()

    def call():
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "SCRIPT_NAME": "", "QUERY_STRING": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data)),
                   "CONTENT_TYPE": "application/json", "REMOTE_ADDR": "127.0.0.1", "wsgi.errors": sys.stderr,
                   "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
                   "wsgi.version": (1, 0)}
        status = []
        b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), status

    def caller(n):
        for _ in range(n):
            call()

    for _ in range(50):
        call()
    per = max(1, requests // threads)
    cpu = []
    for _ in range(3):
        pool = [threading.Thread(target=caller, args=(per,)) for _ in range(threads)]
        t0 = time.process_time()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        cpu.append((time.process_time() - t0) / (per * threads) * 1e6)
    return {"threads": threads, "requests": per * threads, "cpu_us_per_request": round(statistics.median(cpu), 1)}


class Floor(Server):
    def __init__(self, kind: str, name: str):
        super().__init__(f"floor-{kind}", name, "/predict", {"threads": 8, "processes": 1})
        self.kind = kind

    def command(self):
        return [sys.executable, "floor_server.py", self.kind, str(self.port)]


def doc_table(results: dict) -> str:
    s8, s32 = results["summary"]["c8"], results["summary"]["c32"]
    rows = ["| server CPU per request | c=8 | c=32 |", "| --- | ---: | ---: |"]
    for key, name in results["servers"].items():
        rows.append(f"| {name} | {s8[key]['cpu_us_per_request']:,.0f} µs | {s32[key]['cpu_us_per_request']:,.0f} µs |")
    rows += ["", "| the backend app in process, no HTTP | CPU per request |", "| --- | ---: |"]
    for row in results["inprocess"]:
        rows.append(f"| {row['threads']} thread{'s' if row['threads'] > 1 else ''} calling at once | "
                    f"{row['cpu_us_per_request']:,.0f} µs |")
    rows += ["", f"Medians of {results['rounds']} rounds × {results['duration_s']:g} s ({results['created']})."]
    return "\n".join(rows)


def write_doc(results: dict, check: bool = False) -> int:
    return docblock.write(DOC, "stack-floor", doc_table(results), check=check,
                          script="../benchmarks/stack_floor.py --doc")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--child-inprocess", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--doc", action="store_true", help="only rewrite docs/performance.md's table")
    args = parser.parse_args()
    if args.doc:
        return write_doc(json.loads(Path(args.out).read_text()))
    if args.child_inprocess:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="vision-floor-metrics-"))
        print(json.dumps([inprocess(t, args.child_inprocess) for t in (1, 8)]))
        return 0
    if args.short:
        args.rounds, args.duration = 1, 2.0
    servers = [Floor("waitress", "Waitress, bare WSGI callable"), Floor("flask", "Flask route on Waitress"),
               Vision("vision-1", "the backend, 1 worker (production defaults otherwise)", env={"VISION_WORKERS": "1"})]
    script, bodies = load_files(Path(tempfile.mkdtemp(prefix="vision-floor-")))
    runs = {s.key: [] for s in servers}
    for rnd in range(1, args.rounds + 1):
        for server in servers[rnd - 1:] + servers[:rnd - 1]:
            server.start()
            try:
                run_wrk(server, 32, 1.0, bodies, str(script))  # warm-up
                for c in CONCURRENCY:
                    r = {"round": rnd, **run_wrk(server, c, args.duration, bodies, str(script))}
                    runs[server.key].append(r)
                    print(f"round {rnd} {server.key:15} c={c:<3} {r['rps']:8.1f} req/s  "
                          f"cpu/req {r['server_cpu_us_per_request']} µs  non-200 {r['requests'] - r['ok']}", flush=True)
            finally:
                server.stop()
    # The in-process sweep runs in a child: prometheus_client picks its multiprocess mode at import.
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    child = [sys.executable, __file__, "--child-inprocess", str(400 if args.short else 1600)]
    printed = subprocess.run(child, env=env, capture_output=True, text=True, check=True).stdout
    sweep = json.loads(printed.splitlines()[-1])
    for row in sweep:
        print(f"in process, {row['threads']} thread(s): {row['cpu_us_per_request']} µs CPU per request", flush=True)
    summary = {f"c{c}": {k: {"cpu_us_per_request": statistics.median(r["server_cpu_us_per_request"] for r in rs
                                                                        if r["concurrency"] == c),
                             "rps": statistics.median(r["rps"] for r in rs if r["concurrency"] == c)}
                         for k, rs in runs.items()} for c in CONCURRENCY}
    results = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "short": args.short,
               "rounds": args.rounds, "duration_s": args.duration,
               "servers": {s.key: s.name for s in servers}, "runs": runs, "summary": summary,
               "inprocess": sweep}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for c in CONCURRENCY:
        row = summary[f"c{c}"]
        print(f"c={c}: " + ", ".join(f"{k} {v['cpu_us_per_request']:.0f} µs" for k, v in row.items()))
    print(f"saved {out}")
    bad = [k for k, rs in runs.items() for r in rs if r["ok"] < r["requests"] or not r["ok"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
