"""Scaling curves of the backend: req/s and p99 vs workers (1..CPUs) and vs concurrency (1..64).

    .venv/bin/python benchmarks/scaling.py            # 5 s per point, workers 1..usable CPUs
    .venv/bin/python benchmarks/scaling.py --short    # CI: 1 s per point, concurrency 1 and 8

For each worker count a fresh server (``python -m backend``, 8 threads, access log off like
benchmarks/load.py) gets wrk POSTing samples/mnist/7-7.png to /predict at each concurrency. Also
recorded: server CPU per request (utime+stime of the whole process tree from /proc) and the
resident memory of each worker after the run. Writes benchmarks/results/scaling.json and .png.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from load import WRK_SCRIPT, rss_mib, run_wrk, training_running  # noqa: E402  (sibling script)

RESULTS = ROOT / "benchmarks" / "results"
SAMPLE = ROOT / "samples" / "mnist" / "7-7.png"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax_rps, ax_p99, ax_cpu = axes
    for block in results["workers"]:
        runs = block["runs"]
        conc = [r["concurrency"] for r in runs]
        label = f"{block['workers']} worker{'s' if block['workers'] > 1 else ''}"
        ax_rps.plot(conc, [r["rps"] for r in runs], "o-", label=label)
        ax_p99.plot(conc, [r["latency_ms"]["p99"] for r in runs], "o-", label=label)
        ax_cpu.plot(conc, [r["server_cpu_us_per_request"] for r in runs], "o-",
                    label=f"{label}, {block['rss_mib_per_worker']:.0f} MiB RSS each")
    for ax, title, unit in ((ax_rps, "Throughput", "requests / s"), (ax_p99, "p99 latency", "ms"),
                            (ax_cpu, "Server CPU per request", "µs")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(results["concurrency"])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    share = results["machine"]["other_cpu_share"]
    fig.suptitle(f"POST /predict, {results['machine']['cpus']} CPUs, VISION_THREADS={results['threads']}"
                 + (f" — other processes used {share:.0%} of the CPU" if share > 0.05 else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(results: dict) -> str:
    lines = ["| workers | concurrency | req/s | p50 ms | p99 ms | server CPU µs/req | RSS per worker MiB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for block in results["workers"]:
        for r in block["runs"]:
            lat = r["latency_ms"]
            lines.append(f"| {block['workers']} | {r['concurrency']} | {r['rps']:.0f} | {lat['p50']:.2f} | "
                         f"{lat['p99']:.2f} | {r['server_cpu_us_per_request']:.0f} "
                         f"| {block['rss_mib_per_worker']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    from backend.cpus import usable_cpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default=",".join(str(n) for n in range(1, usable_cpus() + 1)))
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--short", action="store_true", help="CI: concurrency 1 and 8, 1 s per point")
    args = parser.parse_args()
    if args.short:
        args.concurrency, args.duration, args.warmup = "1,8", 1.0, 1.0
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    from devkit.backend_server import BackendServer

    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="vision-scaling-"))
    script, body = work / "bench.lua", work / "body.json"
    script.write_text(WRK_SCRIPT)
    body.write_text(json.dumps({"base64": base64.b64encode(SAMPLE.read_bytes()).decode()}))
    results = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "threads": args.threads,
               "concurrency": levels, "duration_s": args.duration, "short": args.short,
               "machine": {"cpus": len(os.sched_getaffinity(0)), "usable_cpus": usable_cpus(),
                           "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                           "training_running": training_running()},
               "workers": []}
    for n in (int(w) for w in args.workers.split(",")):
        server = BackendServer(env={"VISION_WORKERS": str(n), "VISION_THREADS": str(args.threads),
                                    "VISION_LOG_LEVEL": "WARNING"}).start()
        block = {"workers": n, "runs": []}
        try:
            for c in levels:
                run_wrk(server.url + "/predict", c, args.warmup, str(body), str(script))
                r = run_wrk(server.url + "/predict", c, args.duration, str(body), str(script), server.proc.pid)
                block["runs"].append(r)
                print(f"workers {n} c={c:<3} {r['rps']:8.1f} req/s  p99 {r['latency_ms']['p99']:7.2f} ms  "
                      f"cpu/req {r.get('server_cpu_us_per_request')} us  errors {sum(r['errors'].values())}",
                      flush=True)
            rss = rss_mib(server.proc.pid)
            supervisor = rss.pop(server.proc.pid) if n > 1 else 0.0  # one process = the worker itself
            workers = sorted(rss.values()) if n > 1 else [rss[server.proc.pid]]
            block["rss_mib"] = {"supervisor": supervisor, "workers": workers}
            block["rss_mib_per_worker"] = round(sum(block["rss_mib"]["workers"]) / len(block["rss_mib"]["workers"]), 1)
        finally:
            server.stop()
        results["workers"].append(block)
    shutil.rmtree(work, ignore_errors=True)
    runs = [r for b in results["workers"] for r in b["runs"]]
    results["machine"]["other_cpu_share"] = round(
        sum(r["cpu_seconds"]["other"] for r in runs) / sum(r["cpu_seconds"]["available"] for r in runs), 3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "scaling.png")
    print(markdown_table(results))
    print(f"saved {out / 'scaling.json'} and {out / 'scaling.png'}")
    errors = sum(sum(r["errors"].values()) for r in runs)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
