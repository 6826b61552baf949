"""The backend against the serving frameworks a user could pick instead, same model, same machine, one run.

    .venv/bin/python benchmarks/peers.py --install    # create/refresh each peer's venv, then exit
    .venv/bin/python benchmarks/peers.py              # 3 rounds × (c=8, c=32) × 8 s per server
    .venv/bin/python benchmarks/peers.py --short      # CI: 2 rounds × 2 s; fails below FLOORS
    .venv/bin/python benchmarks/peers.py --doc        # docs/performance.md and README from the saved JSON

Peers: KServe's Python model server, TorchServe, LitServe and BentoML, each installed at a pinned
version into its own venv (benchmarks/.venv-<peer>, reused while the pins match) and configured as its
docs advise for CPU throughput on this 2-core machine: 2 worker processes, batching where the
framework has it, access logs off. All serve models/mnist.onnx through ONNX Runtime with the backend's
session options (1 intra-op thread per worker, benchmarks/peer_servers/digits.py); the backend runs
with its production defaults (``visionctl serve``: VISION_WORKERS=auto, access log on, metrics on,
the out-of-distribution verdict, its digit-fitting preprocessing). Every setting is in the JSON.

Each round starts, measures and stops one server at a time (the order rotates round by round; an
idle framework may still use CPU), with wrk (one C thread): a warm-up, then c=8 and c=32, POSTing 4 MNIST test digits
as base64 PNG in each framework's JSON body. Only 200s count as throughput. Server CPU is the
utime+stime of the server's whole process tree from /proc. The summary is the median over rounds of
the per-round ratio backend / peer (rounds are back to back, so machine drift cancels), and p99.
Writes benchmarks/results/peers.json (``--out``).
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
import sysconfig
import tempfile
import time
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "scripts")]

import docblock  # noqa: E402  (scripts/, the shared doc-block writer)
from load import machine_busy_seconds, process_tree, rss_mib, training_running  # noqa: E402

RESULTS = HERE / "results"
SERVERS_DIR = HERE / "peer_servers"
DOC, README = ROOT / "docs" / "performance.md", ROOT / "README.md"
SAMPLES = [ROOT / "samples" / "mnist" / f"{d}-{d}.png" for d in (1, 3, 7, 9)]
CONCURRENCY = (8, 32)
WORKERS = 2
# The same ONNX Runtime, numpy and Pillow as the backend's venv in every peer's venv.
COMMON_PINS = ("onnxruntime==1.32.0", "numpy==2.4.6", "pillow==13.0.0")
# Below these ratios to the fastest peer the --short run fails: about half the lowest ratio seen in
# full and short runs on this shared 2-core machine (c=8: 0.57-0.78, c=32: 0.36-0.53), so a noisy CI
# run still passes and a hot path that got twice as slow does not.
FLOORS = {8: 0.3, 32: 0.2}

# wrk: cycle through the prepared requests (one per sample) and print one JSON summary line.
WRK_SCRIPT = r"""
local paths = {}
for p in string.gmatch(os.getenv("BENCH_BODIES"), "[^;]+") do table.insert(paths, p) end
local requests, n = {}, 0
init = function(args)
  for i, path in ipairs(paths) do
    local f = io.open(path, "rb")
    requests[i] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, f:read("*a"))
    f:close()
  end
end
request = function()
  n = n % #requests + 1
  return requests[n]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def load_files(work: Path, body=lambda encoded: {"base64": encoded}, prefix: str = "") -> tuple[Path, str]:
    """wrk's script and the request bodies it cycles through (``BENCH_BODIES``): each of the 4 samples as
    base64 PNG in ``body(encoded)`` (a framework's JSON shape), written into ``work``."""
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT)
    paths = []
    for i, sample in enumerate(SAMPLES):
        path = work / f"{prefix}{i}.json"
        path.write_text(json.dumps(body(base64.b64encode(sample.read_bytes()).decode())))
        paths.append(str(path))
    return script, ";".join(paths)


# ---- servers -----------------------------------------------------------------------------------------

@dataclass
class Server:
    """One server under test: how to install and start it, where to POST, how its body looks."""

    key: str
    name: str
    path: str
    settings: dict
    pins: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    port: int = 0
    work: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def body(self, encoded: str) -> dict:
        return {"base64": encoded}

    def label(self, answer) -> str | None:
        return answer.get("label") if isinstance(answer, dict) else None

    def venv_bin(self) -> Path:
        return HERE / f".venv-{self.key}" / "bin"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("VISION_")},
                "PYTHONPATH": str(SERVERS_DIR), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def start(self, timeout: float = 180) -> None:
        from devkit.backend_server import free_port

        self.port = free_port()
        self.work = Path(tempfile.mkdtemp(prefix=f"vision-peers-{self.key}-"))
        self.prepare()
        self.proc = subprocess.Popen(self.command(), cwd=SERVERS_DIR, env=self.env(),
                                     stdout=open(self.work / "server.log", "w"),  # noqa: SIM115 (child owns it)
                                     stderr=subprocess.STDOUT, process_group=0)
        body = json.dumps(self.body(base64.b64encode(SAMPLES[2].read_bytes()).decode())).encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200 and self.label(json.loads(resp.read())) == "7":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"{self.name} not serving within {timeout}s:\n{self.logs()}")

    def prepare(self) -> None:
        """Files the server needs before it starts (archives, configs)."""

    def logs(self) -> str:
        path = self.work / "server.log" if self.work else None
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    def stop(self) -> None:
        """The whole process tree: LitServe's and KServe's spawned children outlive a SIGTERM to the
        parent alone, and BentoML's workers are in process groups of their own."""
        if self.proc is not None and self.proc.poll() is None:
            pids = list(process_tree(self.proc.pid))
            for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and any(_alive(p) for p in pids):
                    self.proc.poll()
                    time.sleep(0.2)
            self.proc.wait(5)
        self.proc = None
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Vision(Server):
    def __init__(self, key: str = "vision", name: str = "`visionctl serve` (production defaults)",
                 root: Path | None = None, env: dict[str, str] | None = None):
        super().__init__(key, name, "/predict", {
            "workers": "auto (2 on 2 CPUs)", "threads": "8 per worker (default)", "access_log": "on (INFO, JSON lines)",
            "metrics": "on (Prometheus multiprocess)", "ood_verdict": "on", "preprocessing": "digit fitting",
            "batching": "dynamic, per worker (what is queued, no wait)", "ort_intra_op_threads": 1,
            **({"source_tree": str(root)} if root else {}), **({"env": env} if env else {})})
        self.root, self.extra_env = root, env or {}

    def start(self, timeout: float = 60) -> None:
        from devkit.backend_server import BackendServer

        # `visionctl serve` with nothing set: only the port, model folder and log file are the launcher's.
        self.backend = BackendServer(env={"VISION_WORKERS": "auto", **self.extra_env}, startup_timeout=timeout,
                                     root=self.root, model_dir=ROOT / "models").start()
        self.proc, self.port = self.backend.proc, self.backend.port

    def stop(self) -> None:
        if self.proc is not None:
            self.backend.__exit__(None, None, None)  # stops it and removes its log file
            self.proc = None


def kind(server: Server, peers: list[Server]) -> str:
    return "peer" if any(server is p for p in peers) else "backend" if server.key == "vision" else "variant"


def variant(spec: str) -> Vision:
    """``--variant label=TREE[,VISION_X=1,...]``: the backend from another source tree and/or with other
    settings, measured in the same rotation (its ratio to ``vision`` is the lever's effect)."""
    label, _, rest = spec.partition("=")
    tree, *pairs = rest.split(",")
    return Vision(label, f"backend variant `{label}`", Path(tree) if tree else None,
                  dict(p.split("=", 1) for p in pairs))


class KServe(Server):
    def __init__(self):
        super().__init__("kserve", "KServe 0.21 Python server", "/v1/models/mnist:predict", {
            "version": "0.21.0", "workers": WORKERS, "batching": "none (the Python server has none)",
            "access_log": "off (uvicorn.access and kserve.trace at WARNING via --log_config_file)",
            "latency_logging": False, "grpc": False, "protocol": "v1", "ort_intra_op_threads": 1},
            pins=("kserve==0.21.0",))

    def command(self):
        return [str(self.venv_bin() / "python"), "kserve_server.py", "--http_port", str(self.port),
                "--workers", str(WORKERS), "--enable_grpc", "false", "--enable_latency_logging", "false"]


class TorchServe(Server):
    BATCH, DELAY_MS = 16, 1

    def __init__(self):
        super().__init__("torchserve", "TorchServe 0.12", "/predictions/mnist", {
            "version": "0.12.0", "workers": WORKERS, "batch_size": self.BATCH, "max_batch_delay_ms": self.DELAY_MS,
            "access_log": "off (log4j2: ACCESS_LOG off, others WARN)", "async_logging": True,
            "metrics_api": False, "system_metrics": False, "OMP_NUM_THREADS": 1, "ort_intra_op_threads": 1},
            pins=("torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml==6.0.2"))

    def prepare(self):
        from devkit.backend_server import free_port

        store = self.work / "store"
        store.mkdir()
        subprocess.run([str(self.venv_bin() / "torch-model-archiver"), "--model-name", "mnist", "--version", "1.0",
                        "--serialized-file", str(ROOT / "models" / "mnist.onnx"),
                        "--handler", str(SERVERS_DIR / "torchserve_handler.py"),
                        "--export-path", str(store)], check=True, env=self.env())
        log4j = self.work / "log4j2.xml"
        log4j.write_text(LOG4J2)
        models = {"mnist": {"1.0": {"marName": "mnist.mar", "minWorkers": WORKERS, "maxWorkers": WORKERS,
                                    "batchSize": self.BATCH, "maxBatchDelay": self.DELAY_MS,
                                    "responseTimeout": 120}}}
        (self.work / "config.properties").write_text("\n".join([
            f"inference_address=http://127.0.0.1:{self.port}",
            f"management_address=http://127.0.0.1:{free_port()}", f"metrics_address=http://127.0.0.1:{free_port()}",
            f"model_store={store}", "load_models=mnist.mar", f"models={json.dumps(models)}",
            "disable_token_authorization=true", "enable_metrics_api=false", "async_logging=true",
            "install_py_dep_per_model=false", "disable_system_metrics=true", "job_queue_size=1000",
            f"vmargs=-Dlog4j.configurationFile=file://{log4j}", ""]))

    def env(self):
        return {**super().env(), "PATH": f"{self.venv_bin()}:{os.environ['PATH']}",
                "TS_DISABLE_SYSTEM_METRICS": "true", "LOG_LOCATION": str(self.work / "logs"),
                "METRICS_LOCATION": str(self.work / "logs")}

    def command(self):
        return [str(self.venv_bin() / "torchserve"), "--start", "--foreground", "--ncs",
                "--ts-config", str(self.work / "config.properties"), "--model-store", str(self.work / "store")]


# TorchServe's frontend logs through log4j2: its docs' production advice is to drop the access log.
LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT"><PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/></Console>
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="off" additivity="false"/>
    <Logger name="MODEL_LOG" level="warn" additivity="false"><AppenderRef ref="STDOUT"/></Logger>
    <Logger name="MODEL_METRICS" level="off" additivity="false"/>
    <Logger name="TS_METRICS" level="off" additivity="false"/>
    <Logger name="org.pytorch" level="warn"/>
    <Logger name="io.netty" level="error"/>
    <Root level="warn"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""


class LitServe(Server):
    BATCH, TIMEOUT_S = 8, 0.001

    def __init__(self):
        super().__init__("litserve", "LitServe 0.2.19", "/predict", {
            "version": "0.2.19", "workers_per_device": WORKERS, "accelerator": "cpu",
            "max_batch_size": self.BATCH, "batch_timeout_s": self.TIMEOUT_S,
            "api_servers": "default (one per inference worker)", "log_level": "warning (no access log)",
            "ort_intra_op_threads": 1}, pins=("litserve==0.2.19",))

    def command(self):
        return [str(self.venv_bin() / "python"), "litserve_server.py", str(self.port), str(WORKERS), str(self.BATCH),
                str(self.TIMEOUT_S)]


class BentoML(Server):
    BATCH, LATENCY_MS = 16, 1000

    def __init__(self):
        super().__init__("bentoml", "BentoML 1.4.40", "/predict", {
            "version": "1.4.40", "workers": WORKERS, "batching": "adaptive",
            "max_batch_size": self.BATCH, "max_latency_ms": self.LATENCY_MS, "access_log": "off",
            "metrics": "on (default)", "ort_intra_op_threads": 1}, pins=("bentoml==1.4.40",))

    def body(self, encoded):
        return {"images": [encoded]}

    def label(self, answer):
        return answer[0].get("label") if isinstance(answer, list) and answer else None

    def env(self):
        return {**super().env(), "PEER_WORKERS": str(WORKERS), "PEER_MAX_BATCH": str(self.BATCH),
                "PEER_MAX_LATENCY_MS": str(self.LATENCY_MS), "BENTOML_HOME": str(self.work / "bentoml"),
                "BENTOML_DO_NOT_TRACK": "true"}

    def command(self):
        return [str(self.venv_bin() / "bentoml"), "serve", "bentoml_service:Digits", "--host", "127.0.0.1",
                "--port", str(self.port)]


PEERS = (KServe, TorchServe, LitServe, BentoML)


def ensure_venv(server: Server) -> None:
    """The peer's own venv with its pins (re-created when they change). TorchServe's also sees this
    interpreter's site-packages (a .pth file) for torch, which its worker imports: a plain
    ``pip install torch`` would pull a multi-GB CUDA build."""
    path = server.venv_bin().parent
    pins = (*server.pins, *COMMON_PINS)
    marker = path / "vision-pins.txt"
    if marker.is_file() and marker.read_text() == "\n".join(pins):
        return
    shutil.rmtree(path, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(path)
    python = str(path / "bin" / "python")
    if server.key == "torchserve":
        purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        site = Path(subprocess.run([python, "-c", purelib], capture_output=True, text=True, check=True).stdout.strip())
        (site / "_vision_parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    print(f"installing {' '.join(pins)} into {path} ...", flush=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins], check=True)
    marker.write_text("\n".join(pins))


# ---- load ----------------------------------------------------------------------------------------------

def run_wrk(server: Server, connections: int, duration: float, bodies: str, script: str) -> dict:
    env = {**os.environ, "BENCH_BODIES": bodies}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s", "-s", script,
           server.url]
    pid = server.proc.pid
    busy0, cpu0 = machine_busy_seconds(), _tree_seconds(pid)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    busy, cpu = machine_busy_seconds() - busy0, _tree_seconds(pid) - cpu0
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    raw = json.loads(line[7:])
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["errors"]["status"]  # wrk counts non-2xx/3xx answers as status errors
    return {"concurrency": connections, "requests": raw["requests"], "ok": ok, "seconds": round(seconds, 2),
            "rps": round(ok / seconds, 1), "errors": raw["errors"],
            "latency_ms": {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
            "server_cpu_us_per_request": round(cpu / ok * 1e6, 1) if ok else None,
            "cpu_seconds": {"server": round(cpu, 2), "other": round(max(0.0, busy - cpu), 2),
                            "available": round(seconds * len(os.sched_getaffinity(0)), 2)}}


def _tree_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and its live descendants (and the children they reaped)."""
    ticks = sum(int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]) for f in process_tree(pid).values())
    return ticks / os.sysconf("SC_CLK_TCK")


# ---- summary and documents ----------------------------------------------------------------------------

def summarise(results: dict) -> dict:
    runs, keys = results["runs"], list(results["servers"])
    summary = {}
    for c in results["concurrency"]:
        at = {k: {r["round"]: r for r in runs[k] if r["concurrency"] == c} for k in keys}
        rounds = sorted(at["vision"])
        block = {k: {"rps_median": round(statistics.median(r["rps"] for r in at[k].values()), 1),
                     "p99_ms_median": round(statistics.median(r["latency_ms"]["p99"] for r in at[k].values()), 2),
                     "cpu_us_per_request_median": round(statistics.median(
                         r["server_cpu_us_per_request"] or 0 for r in at[k].values()), 1),
                     "errors": sum(r["requests"] - r["ok"] + sum(v for e, v in r["errors"].items() if e != "status")
                                   for r in at[k].values())}
                 for k in keys}
        peer_keys = [k for k in keys if results["servers"][k]["kind"] == "peer"]
        for k in keys:
            if k == "vision":
                continue
            # Per-round ratios: both measured back to back in the same round, so machine drift cancels.
            if k in peer_keys:
                block[k]["vision_ratio_median"] = round(statistics.median(
                    at["vision"][n]["rps"] / at[k][n]["rps"] for n in rounds if at[k][n]["rps"]), 3)
            else:  # a variant of the backend: its effect relative to the backend as committed
                block[k]["rps_vs_vision_median"] = round(statistics.median(
                    at[k][n]["rps"] / at["vision"][n]["rps"] for n in rounds), 3)
                block[k]["cpu_vs_vision_median"] = round(statistics.median(
                    at[k][n]["server_cpu_us_per_request"] / at["vision"][n]["server_cpu_us_per_request"]
                    for n in rounds), 3)
        if peer_keys:
            block["fastest_peer"] = max(peer_keys, key=lambda k: block[k]["rps_median"])
            block["ratio_to_fastest"] = min(block[k]["vision_ratio_median"] for k in peer_keys)
        summary[f"c{c}"] = block
    if "ratio_to_fastest" not in summary["c8"]:
        return summary
    summary["target_met"] = all(summary[f"c{c}"]["ratio_to_fastest"] >= 1.0 for c in results["concurrency"])
    summary["p99_c8_le_15ms"] = summary["c8"]["vision"]["p99_ms_median"] <= 15.0
    return summary


def markdown_table(results: dict) -> str:
    s, servers = results["summary"], results["servers"]
    lines = ["| server | req/s c=8 | req/s c=32 | ratio c=8 | ratio c=32 | p99 ms c=8 | p99 ms c=32 "
             "| server CPU µs/req c=8 / c=32 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, server in servers.items():
        a, b = s["c8"][key], s["c32"][key]
        ratio = tuple(f"{x['vision_ratio_median']:.2f}×" if "vision_ratio_median" in x
                      else f"{x['rps_vs_vision_median']:.2f}× of vision" if "rps_vs_vision_median" in x else "—"
                      for x in (a, b))
        lines.append(f"| {server['name']} | {a['rps_median']:,.0f} | {b['rps_median']:,.0f} | {ratio[0]} | {ratio[1]} "
                     f"| {a['p99_ms_median']:.1f} | {b['p99_ms_median']:.1f} "
                     f"| {a['cpu_us_per_request_median']:,.0f} / {b['cpu_us_per_request_median']:,.0f} |")
    m = results["machine"]
    note = (f"Ratio = the backend's req/s ÷ the peer's, median of {results['rounds']} rounds × "
            f"{results['duration_s']:g} s per concurrency ({results['created']}, {m['cpus']} CPUs, other processes "
            f"used {m['other_cpu_share']:.0%} of the CPU).")
    if "ratio_to_fastest" in s["c8"]:
        note += (f" Against the fastest peer: {s['c8']['ratio_to_fastest']:.2f}× at c=8, "
                 f"{s['c32']['ratio_to_fastest']:.2f}× at c=32.")
    return "\n".join(lines) + "\n\n" + note


def readme_figure(results: dict) -> str:
    s = results["summary"]
    name = {k: v["name"].split(" ")[0] for k, v in results["servers"].items()}
    return (f"{s['c8']['ratio_to_fastest']:.2f}× the fastest peer's req/s at c=8 ({name[s['c8']['fastest_peer']]}), "
            f"{s['c32']['ratio_to_fastest']:.2f}× at c=32 ({name[s['c32']['fastest_peer']]})")


def write_docs(results: dict, check: bool = False) -> int:
    script = "../benchmarks/peers.py --doc"
    return (docblock.write(DOC, "peers", markdown_table(results), check=check, script=script)
            | docblock.write(README, "peers-figure", readme_figure(results), check=check, script=script, inline=True))


# ---- main ------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--peers", default=",".join(p().key for p in PEERS), help="comma-separated subset, or none")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=TREE[,VISION_X=V...]",
                        help="also measure the backend from another source tree / with other settings")
    parser.add_argument("--out", default=str(RESULTS / "peers.json"))
    parser.add_argument("--short", action="store_true", help="CI: 2 rounds of 2 s; exit 1 below the floors")
    parser.add_argument("--install", action="store_true", help="only create/refresh the peers' venvs")
    parser.add_argument("--doc", action="store_true", help="only rewrite the docs' table and README's figure")
    args = parser.parse_args()
    out = Path(args.out)
    if args.doc:
        return write_docs(json.loads(out.read_text()))
    peers = [p() for p in PEERS if p().key in args.peers.split(",")]  # "none": the backend and variants only
    for peer in peers:
        ensure_venv(peer)
    if args.install:
        return 0
    if args.short:
        args.rounds, args.duration, args.warmup = 2, 2.0, 1.0
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2

    servers = [Vision(), *(variant(v) for v in args.variant), *peers]
    work = Path(tempfile.mkdtemp(prefix="vision-peers-load-"))
    bodies = {}
    for server in servers:
        script, bodies[server.key] = load_files(work, server.body, f"{server.key}-")
    results = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "short": args.short,
               "rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
               "concurrency": list(CONCURRENCY), "samples": [str(p.relative_to(ROOT)) for p in SAMPLES],
               "load": "wrk -t1, keep-alive, the 4 samples in turn; only 200s count",
               "machine": {"cpus": len(os.sched_getaffinity(0)), "training_running": training_running(),
                           "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
               "servers": {s.key: {"name": s.name, "path": s.path, "settings": s.settings, "kind": kind(s, peers)}
                           for s in servers},
               "runs": {s.key: [] for s in servers}}
    busy0, t0 = machine_busy_seconds(), time.monotonic()
    # A SIGTERM (a CI timeout) still stops the server under test: no framework is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for rnd in range(1, args.rounds + 1):
        shift = (rnd - 1) % len(servers)
        for server in servers[shift:] + servers[:shift]:
            # One server up at a time: an idle framework still burns CPU (LitServe's workers poll).
            print(f"round {rnd}: starting {server.name} ...", flush=True)
            started = time.monotonic()
            try:
                server.start()
                info = results["servers"][server.key]
                info.setdefault("startup_s", []).append(round(time.monotonic() - started, 1))
                info["rss_mib"] = round(sum(rss_mib(server.proc.pid).values()), 1)
                run_wrk(server, max(CONCURRENCY), args.warmup, bodies[server.key], str(script))
                for c in CONCURRENCY:
                    r = {"round": rnd, **run_wrk(server, c, args.duration, bodies[server.key], str(script))}
                    results["runs"][server.key].append(r)
                    print(f"round {rnd} {server.key:10} c={c:<3} {r['rps']:8.1f} req/s  "
                          f"p50 {r['latency_ms']['p50']:6.2f}  p99 {r['latency_ms']['p99']:6.2f} ms  "
                          f"non-200 {r['requests'] - r['ok']}  cpu/req "
                          f"{r['server_cpu_us_per_request']} µs  other {r['cpu_seconds']['other']} cpu-s", flush=True)
            finally:
                server.stop()
    shutil.rmtree(work, ignore_errors=True)

    runs = [r for rs in results["runs"].values() for r in rs]
    results["machine"]["other_cpu_share"] = round(
        sum(r["cpu_seconds"]["other"] for r in runs) / sum(r["cpu_seconds"]["available"] for r in runs), 3)
    results["machine"]["busy_cpu_share_whole_run"] = round(
        (machine_busy_seconds() - busy0) / ((time.monotonic() - t0) * results["machine"]["cpus"]), 3)
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["summary"] = summary = summarise(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results))
    print(f"saved {out}")
    errors = {k: summary[f"c{c}"][k]["errors"] for k in results["servers"] for c in CONCURRENCY
              if summary[f"c{c}"][k]["errors"]}
    if errors:
        print(f"FAIL: answers other than 200 or socket errors: {errors}", file=sys.stderr)
        return 1
    low = {c: summary[f"c{c}"]["ratio_to_fastest"] for c in CONCURRENCY
           if summary[f"c{c}"].get("ratio_to_fastest", FLOORS[c]) < FLOORS[c]}
    if args.short and low:
        print(f"FAIL: ratio to the fastest peer below the floor {FLOORS}: {low}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
