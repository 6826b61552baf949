"""Load benchmark of the backend: wrk against a real Waitress server on loopback.

    .venv/bin/python benchmarks/load.py                 # start a server on models/, measure, save
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8080 --duration 5

POSTs a real sample PNG (samples/mnist/7-7.png) to /predict at each concurrency (1, 8, 32 by
default), then GETs /healthz the same way as the ceiling of what Flask on Waitress can do here.
Prints a table and writes benchmarks/results/load.json and benchmarks/results/latency.png.

wrk (``apt-get install wrk``) is used because it is a C client with one thread: on a 2-core machine
the load generator competes with the server for CPU, and a Python client would measure itself.
A run is only meaningful on an otherwise idle machine; the JSON records the load average and
whether a training run was active so numbers taken under load are labelled as such.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE = ROOT / "samples" / "mnist" / "7-7.png"
DOC = ROOT / "docs" / "performance.md"
# The saved runs docs/performance.md compares, in its order: two processes, then the default.
DOC_RUNS = (RESULTS / "workers-2" / "load.json", RESULTS / "load.json")

# wrk's Lua hooks: send the JSON body and print the summary as one JSON line wrk cannot print itself
# (p95 and the error breakdown).
WRK_SCRIPT = """
local f = io.open(os.getenv("BENCH_BODY_FILE"), "rb")
if f then
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p95": %d, "p99": %d, ' ..
    '"max": %d, "mean": %.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def machine_busy_seconds() -> float:
    """CPU seconds all processes spent so far (the /proc/stat 'cpu' line minus idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> dict[int, list[str]]:
    """``pid`` and all its descendants → their /proc/<pid>/stat fields after the command name
    (the workers with ``--workers`` > 1; TorchServe's Java frontend and its Python workers)."""
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            procs[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):  # exited meanwhile
            continue
    tree, frontier = {}, [pid]
    while frontier:
        p = frontier.pop()
        if p in procs and p not in tree:
            tree[p] = procs[p]
            frontier += [c for c, f in procs.items() if f[1] == str(p)]  # f[1] = parent pid
    return tree


def process_seconds(pid: int | None) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds; 0 when we did not start the server."""
    if pid is None:
        return 0.0
    ticks = sum(int(f[11]) + int(f[12]) for f in process_tree(pid).values())
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> dict[int, float]:
    """Resident memory of ``pid`` and each descendant, MiB (from /proc/<pid>/stat)."""
    page = os.sysconf("SC_PAGE_SIZE")
    return {p: round(int(f[21]) * page / 2**20, 1) for p, f in process_tree(pid).items()}


def run_wrk(url: str, connections: int, duration: float, body_file: str | None, script: str,
            server_pid: int | None = None) -> dict:
    env = {**os.environ, "BENCH_BODY_FILE": body_file or ""}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s", "-s", script, url]
    busy0, server0, client0 = machine_busy_seconds(), process_seconds(server_pid), _children_seconds()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    busy = machine_busy_seconds() - busy0
    server_cpu = process_seconds(server_pid) - server0
    client_cpu = _children_seconds() - client0
    match = re.search(r"^RESULT (.*)$", out, re.M)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    lat = {k: round(v / 1000, 3) for k, v in raw["latency_us"].items()}  # → milliseconds
    result = {"concurrency": connections, "requests": raw["requests"], "seconds": round(seconds, 2),
              "rps": round(raw["requests"] / seconds, 1), "errors": raw["errors"], "latency_ms": lat,
              # CPU accounting: how much of the machine the server, wrk and everything else used. A
              # large "other" share means the run competed with unrelated work.
              "cpu_seconds": {"server": round(server_cpu, 2), "wrk": round(client_cpu, 2),
                              "other": round(max(0.0, busy - server_cpu - client_cpu), 2),
                              "available": round(seconds * (os.cpu_count() or 1), 2)}}
    if server_pid is not None and raw["requests"]:
        result["server_cpu_us_per_request"] = round(server_cpu / raw["requests"] * 1e6, 1)
    return result


def _children_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def training_running() -> bool:
    return subprocess.run(["pgrep", "-f", "visionctl train"], capture_output=True).returncode == 0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_rps) = plt.subplots(1, 2, figsize=(11, 4.2))
    for endpoint, style in (("predict", "-"), ("healthz", "--")):
        runs = results["runs"][endpoint]
        conc = [r["concurrency"] for r in runs]
        for pct, color in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
            ax_lat.plot(conc, [r["latency_ms"][pct] for r in runs], style, marker="o", color=color,
                        label=f"/{endpoint} {pct}")
        ax_rps.plot(conc, [r["rps"] for r in runs], style, marker="o", label=f"/{endpoint}")
    for ax in (ax_lat, ax_rps):
        ax.set_xscale("log", base=2)
        ax.set_xticks([r["concurrency"] for r in results["runs"]["predict"]])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent connections")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_title("Latency percentiles")
    ax_rps.set_ylabel("requests / s")
    ax_rps.set_title("Throughput")
    share = results["machine"].get("other_cpu_share", 0.0)
    note = f" — other processes used {share:.0%} of the CPU during the runs" if share > 0.05 else ""
    if results["machine"]["training_running"]:
        note += " (a training run was active)"
    fig.suptitle(f"vision-ai backend, {results['machine']['cpus']} CPUs, "
                 f"VISION_WORKERS={results['server'].get('workers')}, "
                 f"VISION_THREADS={results['server']['threads']}{note}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(results: dict) -> str:
    """The runs as a Markdown table (pasted into benchmarks/README.md and docs/performance.md)."""
    lines = ["| endpoint | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU µs/req |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for endpoint, runs in results["runs"].items():
        for r in runs:
            lat = r["latency_ms"]
            lines.append(f"| /{endpoint} | {r['concurrency']} | {r['rps']:.0f} | {lat['p50']:.2f} | {lat['p95']:.2f} | "
                         f"{lat['p99']:.2f} | {sum(r['errors'].values())} "
                         f"| {r.get('server_cpu_us_per_request', '–')} |")
    return "\n".join(lines)


def _spaced(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")


def doc_table(saved: list[dict]) -> str:
    """docs/performance.md's table: /predict per concurrency beside /healthz, one block per saved run."""
    lines = ["| server | concurrency | `/predict` req/s | p50 ms | p99 ms | `/healthz` req/s "
             "| server CPU per `/predict` |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for results in saved:
        server = results["server"]
        label = f"`VISION_WORKERS={server['workers']}`, `VISION_THREADS={server['threads']}`"
        label += " (default, one pod)" if server["workers"] == 1 else ""
        healthz = {r["concurrency"]: r for r in results["runs"]["healthz"]}
        for i, r in enumerate(results["runs"]["predict"]):
            lat = r["latency_ms"]
            lines.append(f"| {label if i == 0 else ''} | {r['concurrency']} | {_spaced(r['rps'])} | {lat['p50']:.2f} | "
                         f"{lat['p99']:.2f} | {_spaced(healthz[r['concurrency']]['rps'])} | "
                         f"{r['server_cpu_us_per_request'] / 1000:.2f} ms |")
    return "\n".join(lines)


def write_doc(check: bool = False) -> int:
    """Rewrite (or with ``check``, compare) docs/performance.md's table from the saved runs."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import docblock  # scripts/, the shared doc-block writer

    table = doc_table([json.loads(p.read_text()) for p in DOC_RUNS])
    return docblock.write(DOC, "load", table, check=check, script="../benchmarks/load.py --doc")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc", action="store_true",
                        help="only rewrite docs/performance.md's table from the saved runs")
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--model-dir", default=os.environ.get("VISION_MODEL_DIR", str(ROOT / "models")))
    parser.add_argument("--threads", type=int, default=8, help="VISION_THREADS of the started server")
    parser.add_argument("--workers", type=int, default=1, help="VISION_WORKERS of the started server")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=int, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS), help="folder for load.json and latency.png")
    parser.add_argument("--sample", default=str(SAMPLE))
    args = parser.parse_args()
    if args.doc:
        return write_doc()

    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="vision-bench-"))
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT)
    body = work / "body.json"
    body.write_text(json.dumps({"base64": base64.b64encode(Path(args.sample).read_bytes()).decode()}))

    server = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        sys.path.insert(0, str(ROOT))
        from devkit.backend_server import BackendServer  # the same launcher the tests use

        # Access logs off: at thousands of req/s they would measure the terminal, not the service.
        server = BackendServer(model_dir=args.model_dir, env={
            "VISION_THREADS": str(args.threads), "VISION_WORKERS": str(args.workers),
            "VISION_LOG_LEVEL": "WARNING"}).start()
        url = server.url

    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        "sample": str(Path(args.sample).relative_to(ROOT)) if Path(args.sample).is_relative_to(ROOT) else args.sample,
        "server": {"url": url, "threads": args.threads if server else None,
                   "workers": args.workers if server else None},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                    "training_running": training_running()},
        "runs": {"predict": [], "healthz": []},
    }
    try:
        for endpoint, path, body_file in (("predict", "/predict", str(body)), ("healthz", "/healthz", None)):
            for c in levels:
                run_wrk(url + path, c, args.warmup, body_file, str(script))
                r = run_wrk(url + path, c, args.duration, body_file, str(script),
                            server.proc.pid if server else None)
                results["runs"][endpoint].append(r)
                errors = sum(r["errors"].values())
                cpu = r["cpu_seconds"]
                print(f"/{endpoint:8} c={c:<3} {r['rps']:8.1f} req/s  p50 {r['latency_ms']['p50']:7.2f} ms  "
                      f"p95 {r['latency_ms']['p95']:7.2f} ms  p99 {r['latency_ms']['p99']:7.2f} ms  errors {errors}  "
                      f"cpu/req {r.get('server_cpu_us_per_request', '-')} us  other load {cpu['other']}/"
                      f"{cpu['available']} cpu-s", flush=True)
    finally:
        if server:
            server.stop()

    pred = {r["concurrency"]: r for r in results["runs"]["predict"]}
    health = {r["concurrency"]: r for r in results["runs"]["healthz"]}
    results["summary"] = {f"c{c}": {"predict_rps": pred[c]["rps"], "predict_p99_ms": pred[c]["latency_ms"]["p99"],
                                    "predict_vs_healthz": round(pred[c]["rps"] / health[c]["rps"], 3),
                                    "predict_server_cpu_us": pred[c].get("server_cpu_us_per_request"),
                                    "healthz_server_cpu_us": health[c].get("server_cpu_us_per_request")}
                          for c in levels}
    all_runs = results["runs"]["predict"] + results["runs"]["healthz"]
    results["machine"]["other_cpu_share"] = round(
        sum(r["cpu_seconds"]["other"] for r in all_runs) / sum(r["cpu_seconds"]["available"] for r in all_runs), 3)
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["training_running"] = results["machine"]["training_running"] or training_running()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "latency.png")
    print(markdown_table(results))
    print(f"saved {out / 'load.json'} and {out / 'latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
