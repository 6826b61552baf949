"""The backend vs a tuned TorchServe on the same machine, same weights, same body, in one run.

    .venv/bin/python benchmarks/compare_torchserve.py             # 3 rounds × 10 s per server
    .venv/bin/python benchmarks/compare_torchserve.py --short     # CI: 2 rounds × 2 s, same servers
    .venv/bin/python benchmarks/compare_torchserve.py --doc       # docs/performance.md's table from the saved JSON

TorchServe 0.12 + torch-model-archiver are installed into their own venv (``--venv``, default
benchmarks/.venv-torchserve, reused while the pins match). That venv sees this interpreter's
site-packages through a .pth file, so it reuses the installed torch (a plain ``pip install torch``
would pull a multi-GB CUDA build). The archive serves models/mnist.pt (the assignment's ``Net``)
with benchmarks/torchserve/handler.py: same ``{"base64": ...}`` body, the backend's own decoding
and preprocessing code, same response fields. TorchServe is tuned the usual way for CPU: 2 workers,
OMP_NUM_THREADS=1, async logging, metrics API off.

Both servers run side by side for the whole run; each round loads one, then the other (order
alternating), with wrk (one C thread, c=8 by default) POSTing samples/mnist/7-7.png, after a
warm-up. A response other than 2xx counts as an error, never as throughput. The backend runs with
its defaults (VISION_WORKERS=auto, 8 threads, access log on, to a file). Writes
benchmarks/results/compare_torchserve.json and .png.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

from load import WRK_SCRIPT, machine_busy_seconds, rss_mib, run_wrk, training_running  # noqa: E402  (sibling script)

RESULTS = ROOT / "benchmarks" / "results"
SAMPLE = ROOT / "samples" / "mnist" / "7-7.png"
PINS = ("torchserve==0.12.0", "torch-model-archiver==0.12.0")
HANDLER = ROOT / "benchmarks" / "torchserve" / "handler.py"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- compare_torchserve:begin -->", "<!-- compare_torchserve:end -->"
TARGET_RATIO, TARGET_P99_MS = 2.0, 15.0


# ---- TorchServe -------------------------------------------------------------------------------

def ensure_venv(path: Path) -> Path:
    """The TorchServe venv (created once; reinstalled when the pins change). Returns its bin/."""
    marker = path / "vision-pins.txt"
    bin_dir = path / "bin"
    if marker.is_file() and marker.read_text() == "\n".join(PINS) and (bin_dir / "torchserve").exists():
        return bin_dir
    shutil.rmtree(path, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(path)
    import sysconfig

    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(bin_dir / "python"), "-c", purelib],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_vision_parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, numpy, Pillow
    print(f"installing {' '.join(PINS)} into {path} ...", flush=True)
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", *PINS], check=True)
    marker.write_text("\n".join(PINS))
    return bin_dir


class TorchServe:
    def __init__(self, bin_dir: Path, workers: int):
        self.bin_dir, self.workers = bin_dir, workers
        self.work = Path(tempfile.mkdtemp(prefix="vision-torchserve-"))
        from devkit.backend_server import free_port

        self.port, self.mgmt, self.metrics = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = None

    def env(self) -> dict:
        return {**os.environ, "PATH": f"{self.bin_dir}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(ROOT), "TS_DISABLE_SYSTEM_METRICS": "true", "LOG_LOCATION": str(self.work / "logs"),
                "METRICS_LOCATION": str(self.work / "logs")}

    def start(self, timeout: float = 180) -> TorchServe:
        store = self.work / "store"
        store.mkdir()
        subprocess.run([str(self.bin_dir / "torch-model-archiver"), "--model-name", "mnist", "--version", "1.0",
                        "--serialized-file", str(ROOT / "models" / "mnist.pt"), "--handler", str(HANDLER),
                        "--export-path", str(store)], check=True, env=self.env())
        config = self.work / "config.properties"
        config.write_text("\n".join([
            f"inference_address=http://127.0.0.1:{self.port}",
            f"management_address=http://127.0.0.1:{self.mgmt}",
            f"metrics_address=http://127.0.0.1:{self.metrics}",
            f"model_store={store}", "load_models=mnist.mar", f"default_workers_per_model={self.workers}",
            "disable_token_authorization=true", "enable_metrics_api=false", "async_logging=true",
            "install_py_dep_per_model=false", "disable_system_metrics=true", "job_queue_size=1000", ""]))
        self.log = open(self.work / "torchserve.out", "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([str(self.bin_dir / "torchserve"), "--start", "--foreground", "--ncs",
                                      "--ts-config", str(config), "--model-store", str(store)],
                                     cwd=self.work, env=self.env(), stdout=self.log, stderr=subprocess.STDOUT,
                                     process_group=0)
        deadline = time.monotonic() + timeout
        body = json.dumps({"base64": base64.b64encode(SAMPLE.read_bytes()).decode()}).encode()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"torchserve exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                req = urllib.request.Request(self.url + "/predictions/mnist", body,
                                             {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    answer = json.loads(resp.read())
                if answer.get("label") == "7":
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"torchserve not serving within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return (self.work / "torchserve.out").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:  # the launcher, the JVM and its Python workers
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.log:
            self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)


# ---- results -------------------------------------------------------------------------------------

def summarise(runs: list[dict]) -> dict:
    rps = [r["rps"] for r in runs]
    p99 = [r["latency_ms"]["p99"] for r in runs]
    return {"rps_median": round(statistics.median(rps), 1), "rps_best": max(rps),
            "p99_ms_median": round(statistics.median(p99), 2), "p99_ms_best": min(p99),
            "p50_ms_median": round(statistics.median(r["latency_ms"]["p50"] for r in runs), 2),
            "cpu_us_per_request_median": round(
                statistics.median(r.get("server_cpu_us_per_request", 0) for r in runs), 1),
            "errors": sum(sum(r["errors"].values()) for r in runs)}


def markdown_table(results: dict) -> str:
    """The side-by-side table docs/performance.md shows (regenerated by ``--doc``)."""
    s = results["summary"]
    m = results["machine"]
    rows = [("`visionctl serve` (defaults: " + f"{results['servers']['vision']['workers']} workers, "
             f"{results['servers']['vision']['threads']} threads)", s["vision"]),
            (f"TorchServe {results['servers']['torchserve']['version']} "
             f"({results['servers']['torchserve']['workers']} workers, OMP_NUM_THREADS=1)", s["torchserve"])]
    lines = [f"| server (c={results['concurrency']}, {results['rounds']} rounds × {results['duration_s']:g} s) "
             "| req/s median (best) | p50 ms | p99 ms median (best) | server CPU µs/req | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows:
        lines.append(f"| {name} | {r['rps_median']:.0f} ({r['rps_best']:.0f}) | {r['p50_ms_median']:.2f} | "
                     f"{r['p99_ms_median']:.2f} ({r['p99_ms_best']:.2f}) | {r['cpu_us_per_request_median']:.0f} "
                     f"| {r['errors']} |")
    lines.append(f"| **ratio** | **{s['ratio_median']:.2f}×** | | | | |")
    note = (f"{m['cpus']} CPUs, {results['created']}, other processes used {m['other_cpu_share']:.0%} of the CPU"
            + (" (measured under contention)" if m["other_cpu_share"] > 0.05 else ""))
    if "healthz" in s:
        note += f"; `/predict` = {s['predict_vs_healthz']:.0%} of `/healthz` ({s['healthz']['rps_median']:.0f} req/s)"
    return "\n".join(lines) + f"\n\n{note}."


def update_doc(results: dict, doc: Path = DOC) -> None:
    text = doc.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    doc.write_text(text[:start] + "\n" + markdown_table(results) + "\n" + text[end:])


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"vision": "tab:blue", "torchserve": "tab:orange"}
    names = {"vision": "visionctl serve", "torchserve": "TorchServe"}
    for key, runs in results["runs"].items():
        if key not in colours:
            continue
        rounds = [r["round"] for r in runs]
        ax_rps.plot(rounds, [r["rps"] for r in runs], "o-", color=colours[key], label=names[key])
        ax_p99.plot(rounds, [r["latency_ms"]["p99"] for r in runs], "o-", color=colours[key], label=f"{names[key]} p99")
        ax_p99.plot(rounds, [r["latency_ms"]["p50"] for r in runs], "o--", color=colours[key], alpha=0.6,
                    label=f"{names[key]} p50")
    ax_p99.axhline(TARGET_P99_MS, color="tab:red", lw=0.8, ls=":", label=f"p99 target {TARGET_P99_MS:g} ms")
    for ax, title, unit in ((ax_rps, "Throughput", "requests / s"), (ax_p99, "Latency", "ms")):
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.set_xticks(sorted({r["round"] for r in results["runs"]["vision"]}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    s, m = results["summary"], results["machine"]
    fig.suptitle(f"POST /predict, c={results['concurrency']}, {m['cpus']} CPUs — median ratio {s['ratio_median']:.2f}×"
                 + (f" (other processes used {m['other_cpu_share']:.0%} of the CPU)"
                    if m["other_cpu_share"] > 0.05 else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main -------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--torchserve-workers", type=int, default=2)
    parser.add_argument("--venv", default=str(ROOT / "benchmarks" / ".venv-torchserve"))
    parser.add_argument("--out", default=str(RESULTS), help="folder for compare_torchserve.json/.png")
    parser.add_argument("--short", action="store_true", help="CI: 2 rounds of 2 s (the same servers, fewer numbers)")
    parser.add_argument("--doc", action="store_true",
                        help="only rewrite docs/performance.md's table from the saved JSON")
    args = parser.parse_args()
    out = Path(args.out)
    if args.doc:
        update_doc(json.loads((out / "compare_torchserve.json").read_text()))
        print(f"updated {DOC}")
        return 0
    if args.short:
        args.rounds, args.duration, args.warmup = 2, 2.0, 1.0
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2

    from devkit.backend_server import BackendServer

    bin_dir = ensure_venv(Path(args.venv))
    work = Path(tempfile.mkdtemp(prefix="vision-compare-"))
    script, body = work / "bench.lua", work / "body.json"
    script.write_text(WRK_SCRIPT)
    body.write_text(json.dumps({"base64": base64.b64encode(SAMPLE.read_bytes()).decode()}))

    # The backend exactly as `visionctl serve` starts it, apart from the port.
    vision = BackendServer(env={"VISION_WORKERS": "auto", "VISION_THREADS": "8", "VISION_LOG_LEVEL": "INFO"})
    ts = TorchServe(bin_dir, args.torchserve_workers)
    busy0, t0 = machine_busy_seconds(), time.monotonic()
    results = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "concurrency": args.concurrency,
               "rounds": args.rounds, "duration_s": args.duration, "short": args.short,
               "sample": str(SAMPLE.relative_to(ROOT)),
               "machine": {"cpus": len(os.sched_getaffinity(0)),
                           "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                           "training_running": training_running()},
               "runs": {"vision": [], "torchserve": [], "healthz": []}}
    try:
        vision.start()
        ts.start()
        from backend.cpus import usable_cpus

        results["servers"] = {
            "vision": {"workers": usable_cpus(), "threads": 8, "rss_mib": rss_mib(vision.proc.pid)},
            "torchserve": {"version": PINS[0].split("==")[1], "workers": args.torchserve_workers,
                           "rss_mib": rss_mib(ts.proc.pid)}}
        targets = {"vision": (vision.url + "/predict", vision.proc.pid),
                   "torchserve": (ts.url + "/predictions/mnist", ts.proc.pid)}
        for rnd in range(1, args.rounds + 1):
            order = ["vision", "torchserve"] if rnd % 2 else ["torchserve", "vision"]
            for key in order:
                url, pid = targets[key]
                run_wrk(url, args.concurrency, args.warmup, str(body), str(script))
                r = {"round": rnd, **run_wrk(url, args.concurrency, args.duration, str(body), str(script), pid)}
                results["runs"][key].append(r)
                print(f"round {rnd} {key:10} {r['rps']:8.1f} req/s  p50 {r['latency_ms']['p50']:6.2f} ms  "
                      f"p99 {r['latency_ms']['p99']:6.2f} ms  errors {sum(r['errors'].values())}  "
                      f"cpu/req {r.get('server_cpu_us_per_request', '-')} us  other {r['cpu_seconds']['other']} cpu-s",
                      flush=True)
            r = {"round": rnd, **run_wrk(vision.url + "/healthz", args.concurrency, args.duration, None, str(script),
                                         vision.proc.pid)}
            results["runs"]["healthz"].append(r)
    finally:
        vision.stop()
        ts.stop()
        shutil.rmtree(work, ignore_errors=True)

    runs = [r for rs in results["runs"].values() for r in rs]
    measured = sum(r["cpu_seconds"]["available"] for r in runs)
    results["machine"]["other_cpu_share"] = round(sum(r["cpu_seconds"]["other"] for r in runs) / measured, 3)
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["busy_cpu_share_whole_run"] = round(
        (machine_busy_seconds() - busy0) / ((time.monotonic() - t0) * results["machine"]["cpus"]), 3)
    s = {key: summarise(results["runs"][key]) for key in results["runs"]}
    s["ratio_median"] = round(s["vision"]["rps_median"] / s["torchserve"]["rps_median"], 2)
    s["ratio_best"] = round(s["vision"]["rps_best"] / s["torchserve"]["rps_best"], 2)
    s["predict_vs_healthz"] = round(s["vision"]["rps_median"] / s["healthz"]["rps_median"], 3)
    s["targets"] = {"ratio_ge_2": s["ratio_median"] >= TARGET_RATIO,
                    "p99_le_15ms": s["vision"]["p99_ms_median"] <= TARGET_P99_MS,
                    "predict_ge_half_healthz": s["predict_vs_healthz"] >= 0.5}
    results["summary"] = s
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_torchserve.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "compare_torchserve.png")
    print(markdown_table(results))
    print(f"saved {out / 'compare_torchserve.json'} and {out / 'compare_torchserve.png'}")
    return 1 if s["vision"]["errors"] or s["torchserve"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
