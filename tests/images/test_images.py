"""The real images: built from Dockerfile.backend / Dockerfile.frontend, run as the rendered pods run them.

Every container here gets its flags from the pod spec the chart and the plain manifests render,
translated by tests/support/pod_run.py (user, read-only root, capabilities, no-new-privileges,
volumes; for the rendered-pod test also limits, env, args, ports and the kubelet's probes).

Docker is required: the session skips without it, except with ``VISION_REQUIRE_DOCKER=1`` (CI),
where it first tries ``../shared/tools/offline-base-image.sh`` (which starts dockerd) and fails if
Docker still does not answer. The base image is ``$VISION_BASE_IMAGE``; unset, the same script
builds an offline stand-in for python:3.11-slim. Builds use the layer cache, so a rerun with
unchanged requirements takes seconds. Sizes and build times go to build/image-report.json.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from helm_render import find, load_docs
from pod_run import PodRun, probe_like_kubelet, quantity, translate
from repo import ROOT

import visionctl
from visionctl import constants

SHARED_TOOLS = Path(os.environ.get("VISION_SHARED_TOOLS", ROOT.parent / "shared" / "tools"))
SHARED_BASE_SCRIPT = SHARED_TOOLS / "offline-base-image.sh"
BACKEND = f"{constants.BACKEND_IMAGE}:{constants.IMAGE_TAG}"
FRONTEND = f"{constants.FRONTEND_IMAGE}:{constants.IMAGE_TAG}"
UID = constants.RUN_AS_UID
MANIFESTS = ROOT / "deploy" / "manifests"


def manifest_docs(*folders: str) -> list[dict]:
    """The plain manifests' objects: the default set (deploy/manifests/*.yaml) plus opt-in folders."""
    paths = [p for d in ("", *folders) for p in sorted((MANIFESTS / d).glob("*.yaml"))]
    return [doc for p in paths for doc in load_docs(p.read_text())]


def workload_pod(docs: list[dict], component: str) -> dict:
    return find(docs, "Deployment", component=component)[0]["spec"]["template"]


def pod_flags(component: str) -> list[str]:
    """How the plain manifests' pod runs the component's container: its security context and writable
    volumes as `docker run` flags (tests that set their own env, CPUs or ports add those)."""
    docs = manifest_docs("ui")
    # ConfigMap volumes (the release state) become files on the host, mounted read-only as the kubelet would.
    files = Path(tempfile.mkdtemp(prefix=f"pod-files-{component}-"))
    run = translate(workload_pod(docs, component)["spec"], component, docs=docs, files_dir=files)
    return [*run.security, *run.volumes]


POD_FLAGS = {"backend": pod_flags("backend"), "frontend": pod_flags("frontend")}
BACKEND_BUDGET_MB = 250  # issue 4: backend image ≤ 250 MB on top of its base
FRONTEND_BUDGET_MB = 500  # Streamlit pulls pandas + pyarrow (~200 MB); a guard against regressions
MB = 1_000_000

pytestmark = pytest.mark.docker


def docker(*args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout, **kw)


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# ---- session fixtures: engine, base image, images -------------------------------------------------

@pytest.fixture(scope="session")
def base_image() -> str:
    required = os.environ.get("VISION_REQUIRE_DOCKER") == "1"
    explicit = os.environ.get("VISION_BASE_IMAGE")
    if not docker_answers():
        if not required:
            pytest.skip("Docker is not available (set VISION_REQUIRE_DOCKER=1 to make this a failure)")
        if not SHARED_BASE_SCRIPT.is_file():
            pytest.fail(f"Docker is not available and {SHARED_BASE_SCRIPT} is missing to start it")
    if explicit and docker_answers():
        return explicit
    if SHARED_BASE_SCRIPT.is_file():  # starts dockerd if needed, builds/reuses the stand-in base
        result = subprocess.run(["bash", str(SHARED_BASE_SCRIPT)], cwd=ROOT, capture_output=True, text=True,
                                timeout=1800)
        if result.returncode != 0 or not docker_answers():
            pytest.fail(f"could not start Docker / build the base image:\n{result.stderr[-3000:]}")
        return explicit or result.stdout.strip().splitlines()[-1]
    return "python:3.11-slim"


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", ref, "--format", "{{.Size}}").stdout)


@pytest.fixture(scope="session")
def images(base_image) -> dict:
    """Build both images with scripts/build-images.sh; returns measurements (also written to build/)."""
    missing = [f"models/{n}.{ext}" for n in constants.MODEL_NAMES for ext in ("onnx", "json")
               if not (ROOT / "models" / f"{n}.{ext}").is_file()]
    if missing:
        pytest.fail(f"the backend image bakes models/; missing: {', '.join(missing)} (run visionctl train)")
    report = {"base_image": base_image, "base_bytes": image_size(base_image), "images": {}}
    for component, ref in (("backend", BACKEND), ("frontend", FRONTEND)):
        start = time.monotonic()
        result = subprocess.run([str(ROOT / "scripts" / "build-images.sh"), component], cwd=ROOT,
                                env={**os.environ, "BASE_IMAGE": base_image}, capture_output=True, text=True,
                                timeout=1800)
        seconds = time.monotonic() - start
        if result.returncode != 0:
            pytest.fail(f"building {ref} failed:\n{(result.stdout + result.stderr)[-4000:]}")
        size = image_size(ref)
        report["images"][component] = {"ref": ref, "build_seconds": round(seconds, 1), "bytes": size,
                                        "over_base_mb": round((size - report["base_bytes"]) / MB, 1)}
    out = ROOT / "build" / "image-report.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nimage report ({out}): {json.dumps(report)}")
    return report


def _mount_targets(flags) -> set[str]:
    """Container paths that `-v host:path[:mode]` flags mount."""
    return {flags[i + 1].split(":")[1] for i, f in enumerate(flags[:-1]) if f == "-v"}


def _without_mounts(flags: list[str], targets: set[str]) -> list[str]:
    """The pod's flags less its own mounts of ``targets`` (a test that mounts its own content there)."""
    out, skip = [], False
    for i, f in enumerate(flags):
        if skip:
            skip = False
            continue
        if f in ("-v", "--mount") and i + 1 < len(flags):
            value = flags[i + 1]
            target = value.split(":")[1] if f == "-v" else dict(
                kv.split("=", 1) for kv in value.split(",") if "=" in kv).get("target")
            if target in targets:
                skip = True
                continue
        out.append(f)
    return out


class Container:
    """A detached container, removed on exit; its stdout/stderr are kept for failure messages."""

    def __init__(self, image: str, *, args=(), env=None, network=None, aliases=(), publish=None,
                 entrypoint=None, run_flags=()):
        self.name = f"vision-test-{uuid.uuid4().hex[:10]}"
        pod = _without_mounts(POD_FLAGS["frontend" if image == FRONTEND else "backend"], _mount_targets(run_flags))
        argv = ["run", "-d", "--name", self.name, *pod, *run_flags]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        if network:
            argv += ["--network", network] + [f"--network-alias={a}" for a in aliases]
        ports = (publish,) if isinstance(publish, int) else tuple(publish or ())
        for port in ports:
            argv += ["-p", f"127.0.0.1::{port}"]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        docker(*argv, image, *args)
        # The host address of each published container port; ``url`` is the first one's.
        self.urls = {port: f"http://{docker('port', self.name, f'{port}/tcp').stdout.split()[0]}" for port in ports}
        self.url = self.urls[ports[0]] if ports else None

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]

    def exec(self, *argv: str, check=False) -> subprocess.CompletedProcess:
        return docker("exec", self.name, *argv, check=check, timeout=60)

    def wait_http(self, path: str, timeout: float = 90) -> requests.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.inspect()["State"]["Running"]:
                pytest.fail(f"{self.name} exited:\n{self.logs()[-3000:]}")
            try:
                resp = requests.get(self.url + path, timeout=2)
                if resp.status_code == 200:
                    return resp
            except requests.RequestException:
                pass
            time.sleep(0.2)
        pytest.fail(f"{self.url}{path} not 200 within {timeout}s:\n{self.logs()[-3000:]}")

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)


@pytest.fixture(scope="module")
def network(images):
    name = f"vision-test-{uuid.uuid4().hex[:10]}"
    docker("network", "create", name)
    yield name
    docker("network", "rm", name, check=False)


@pytest.fixture(scope="module")
def backend(images, network):
    """The backend as the frontend and `helm test` see it: aliases `backend` and the Service name.
    HEALTHCHECK runs every second so the test can watch Docker judge it healthy."""
    c = Container(BACKEND, network=network, aliases=("backend", f"{constants.RELEASE_NAME}-backend"),
                  publish=(constants.BACKEND_PORT, constants.METRICS_PORT),
                  run_flags=["--health-interval=1s", "--health-start-period=60s"])
    try:
        c.wait_http("/readyz")
        yield c
    finally:
        c.remove()


def sample_payload(path: Path) -> dict:
    return {"base64": base64.b64encode(path.read_bytes()).decode()}


# ---- image metadata -----------------------------------------------------------------------------

def test_image_sizes_and_build_report(images):
    backend, frontend = images["images"]["backend"], images["images"]["frontend"]
    assert backend["over_base_mb"] <= BACKEND_BUDGET_MB, images
    assert frontend["over_base_mb"] <= FRONTEND_BUDGET_MB, images


@pytest.mark.parametrize("ref, ports", [(BACKEND, {constants.BACKEND_PORT, constants.METRICS_PORT}),
                                        (FRONTEND, {constants.FRONTEND_PORT})])
def test_image_config(images, ref, ports):
    config = json.loads(docker("image", "inspect", ref).stdout)[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"][0] == "/opt/venv/bin/python"  # exec form: python is PID 1, gets SIGTERM
    assert set(config["ExposedPorts"]) == {f"{p}/tcp" for p in ports}
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert "/metrics" not in " ".join(config["Healthcheck"]["Test"])  # a probe of the API port
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == visionctl.__version__
    assert labels["org.opencontainers.image.title"] == ref.split(":")[0]
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")


def test_backend_image_contents(images):
    """ONNX Runtime but no torch, no pip; exactly the ONNX models + cards (no .pt checkpoints) and
    the golden set of each name (the release gate's)."""
    script = ("import importlib.util as u, os, onnxruntime, json; "
              "print(json.dumps({'torch': bool(u.find_spec('torch')), 'pip': bool(u.find_spec('pip')), "
              "'models': sorted(os.listdir('/app/models')), "
              "'golden': sorted(os.listdir('/app/models/golden'))}))")
    out = json.loads(docker("run", "--rm", *POD_FLAGS["backend"], "--entrypoint", "/opt/venv/bin/python", BACKEND,
                            "-c", script).stdout)
    assert out == {"torch": False, "pip": False,
                   "models": sorted([*(f"{n}.{e}" for n in constants.MODEL_NAMES for e in ("json", "onnx")),
                                     "golden"]),
                   "golden": sorted(f"{n}.npz" for n in constants.MODEL_NAMES)}


# ---- the backend container --------------------------------------------------------------------------

def test_backend_serves_chart_probes_and_predicts(backend):
    from helm_render import helm_binary

    # Probe paths: from the rendered chart when helm is here, else the ones the chart hard-codes.
    paths = {"/healthz", "/readyz"}
    if helm_binary():
        from helm_render import render

        deploy = find(render("default"), "Deployment", component="backend")[0]
        c = deploy["spec"]["template"]["spec"]["containers"][0]
        paths = {c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    for path in paths:
        assert requests.get(backend.url + path, timeout=5).status_code == 200, path
    # Two planes: the API port answers /metrics with its JSON 404; the metrics port serves it.
    api = requests.get(backend.url + "/metrics", timeout=5)
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found", api.text
    metrics = requests.get(backend.urls[constants.METRICS_PORT] + "/metrics", timeout=5)
    assert metrics.status_code == 200 and "vision_ready 1.0" in metrics.text
    for sample in sorted((ROOT / "samples" / "mnist").glob("*.png")):
        resp = requests.post(backend.url + "/predict", json=sample_payload(sample), timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["label"] == sample.stem.split("-", 1)[1], sample.name
    fashion = sorted((ROOT / "samples" / "fashion-mnist").glob("*.png"))
    resp = requests.post(backend.url + "/v1/models/fashion-mnist/predict",
                         json={"instances": [sample_payload(s) for s in fashion]}, timeout=10)
    assert resp.status_code == 200, resp.text
    predictions = resp.json()["predictions"]
    hits = sum(p["class_index"] == int(s.name.split("-")[0]) for p, s in zip(predictions, fashion, strict=True))
    assert hits >= 8, f"fashion-mnist samples: {hits}/10 right"
    # The packaged Swagger UI, explain and the v2 protocol work in the image (no torch, no CDN).
    assert requests.get(backend.url + "/docs/swagger-ui-bundle.js", timeout=5).status_code == 200
    seven = (ROOT / "samples" / "mnist" / "7-7.png").read_bytes()
    explained = requests.post(backend.url + "/v1/models/mnist/explain", data=seven,
                              headers={"Content-Type": "image/png"}, timeout=10)
    assert explained.status_code == 200 and explained.json()["label"] == "7", explained.text
    assert requests.get(backend.url + "/v2/health/ready", timeout=5).status_code == 200


@pytest.mark.parametrize("workers", ["1", "2"])
def test_backend_image_serves_metrics_on_its_own_port(images, workers):
    """The image's defaults (VISION_METRICS_PORT=9090), one process or a supervisor with workers:
    /metrics is the API's JSON 404 on 8080 and the whole server's figures on 9090, printed at start."""
    c = Container(BACKEND, env={"VISION_MODELS": "mnist", "VISION_WORKERS": workers, "VISION_THREADS": "2"},
                  publish=(constants.BACKEND_PORT, constants.METRICS_PORT))
    try:
        c.wait_http("/readyz")
        # /readyz answers once one worker is ready; vision_ready is the minimum over all of them, so
        # wait for the last worker to finish loading before reading it.
        metrics_url = c.urls[constants.METRICS_PORT] + "/metrics"
        deadline = time.monotonic() + 60
        while "vision_ready 1.0" not in requests.get(metrics_url, timeout=5).text and time.monotonic() < deadline:
            time.sleep(0.2)
        seven = {"base64": base64.b64encode((ROOT / "samples" / "mnist" / "7-7.png").read_bytes()).decode()}
        for _ in range(3):  # new connections: with two workers the kernel spreads them
            resp = requests.post(c.url + "/predict", json=seven, headers={"Connection": "close"}, timeout=10)
            assert resp.status_code == 200 and resp.json()["label"] == "7", resp.text
        api = requests.get(c.url + "/metrics", timeout=5)
        assert api.status_code == 404 and api.json()["error"]["code"] == "not_found", api.text
        metrics = requests.get(metrics_url, timeout=5)
        assert metrics.status_code == 200, metrics.text
        assert 'vision_predictions_total{label="7",model="mnist"} 3.0' in metrics.text
        assert "vision_ready 1.0" in metrics.text
        owner = [json.loads(line) for line in c.logs().splitlines() if '"metrics_url"' in line]
        assert [e["metrics_url"] for e in owner] == [f"http://0.0.0.0:{constants.METRICS_PORT}/metrics"], owner
    finally:
        c.remove()


def test_backend_container_is_hardened(backend):
    host = backend.inspect()["HostConfig"]
    assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert backend.exec("touch", "/app/x").returncode != 0  # read-only root
    assert backend.exec("touch", "/tmp/x").returncode == 0  # tmpfs
    assert backend.exec("id", "-u").stdout.strip() == str(UID)
    deadline = time.monotonic() + 30  # the image's own HEALTHCHECK command, run by Docker every second
    while backend.inspect()["State"]["Health"]["Status"] != "healthy" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert backend.inspect()["State"]["Health"]["Status"] == "healthy", backend.inspect()["State"]["Health"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_load_drops_no_request(images, workers):
    """Clients keep posting while PID 1 gets SIGTERM. Like a load balancer that honours the drain
    signal, a client stops once a response says ``Connection: close``; every request must get a 200
    and the process must exit 0. The drain delay stands in for the pod's endpoint removal. With two
    workers PID 1 is the supervisor, which passes the signal on (and keeps its metrics in /tmp)."""
    c = Container(BACKEND, env={"VISION_DRAIN_DELAY": "1", "VISION_THREADS": "4", "VISION_WORKERS": workers},
                  publish=constants.BACKEND_PORT)
    try:
        c.wait_http("/readyz")
        body = {"instances": [sample_payload(p) for p in sorted((ROOT / "samples" / "mnist").glob("*.png"))] * 2}
        url = c.url + "/v1/models/mnist/predict"
        records, failures, lock = [], [], threading.Lock()
        start_load = threading.Event()

        def worker():
            session = requests.Session()
            start_load.wait()
            while True:
                t0 = time.monotonic()
                try:
                    resp = session.post(url, json=body, timeout=30)
                except requests.RequestException as exc:
                    with lock:
                        failures.append(repr(exc))
                    return
                with lock:
                    records.append((t0, time.monotonic()))
                    if resp.status_code != 200 or len(resp.json()["predictions"]) != 20:
                        failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                        return
                if resp.headers.get("Connection", "").lower() == "close":
                    return  # the server is draining: a balancer would stop routing here now

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        start_load.set()
        time.sleep(1.5)
        pid = c.inspect()["State"]["Pid"]
        t_signal = time.monotonic()
        try:
            os.kill(pid, signal.SIGTERM)  # precise timing when the engine runs on this host as us
        except (PermissionError, ProcessLookupError):
            docker("kill", "--signal", "TERM", c.name)
        t_sent = time.monotonic()
        for t in threads:
            t.join(60)
        exit_code = int(docker("wait", c.name, timeout=60).stdout.strip())
        logs = c.logs()
        in_flight = sum(1 for t0, t1 in records if t0 < t_signal and t1 > t_sent)
        print(f"\nSIGTERM under load: {len(records)} requests, {in_flight} in flight at the signal, "
              f"{len(failures)} failed, exit code {exit_code}")
        assert failures == [], f"{failures}\n{logs[-3000:]}"
        assert exit_code == 0, logs[-3000:]
        assert len(records) >= 20 and in_flight >= 1, (len(records), in_flight)
        assert "Traceback" not in logs
        assert logs.count('"message": "stopped"') == int(workers) + (workers != "1")  # + the supervisor
    finally:
        c.remove()


@pytest.mark.parametrize("cpus, expected", [("1", 1), ("1.5", 1), ("2", 2)])
def test_image_starts_one_worker_per_cpu_of_its_quota(images, cpus, expected):
    """VISION_WORKERS=auto (the image's default) counts the container's CPU quota, not the host's."""
    if expected > len(os.sched_getaffinity(0)):
        pytest.fail(f"this test needs a machine with at least {expected} CPUs")
    c = Container(BACKEND, env={"VISION_MODELS": "mnist"}, publish=constants.BACKEND_PORT,
                  run_flags=["--cpus", cpus])
    try:
        c.wait_http("/readyz")
        events = [json.loads(line) for line in c.logs().splitlines() if line.startswith("{")]
        started = [e for e in events if e.get("message") == "workers started"]
        assert (started[0]["workers"] if started else 1) == expected, c.logs()[-2000:]
    finally:
        c.remove()


# ---- frontend + backend on one network, helm test script -------------------------------------------

def test_frontend_reaches_backend_by_name(images, network, backend):
    fe = Container(FRONTEND, network=network, publish=constants.FRONTEND_PORT)  # VISION_API_URL=http://backend:8080
    try:
        assert fe.wait_http("/_stcore/health", timeout=120).text.strip() == "ok"
        page = requests.get(fe.url + "/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        probe = fe.exec("/opt/venv/bin/python", "-c",
                        "import urllib.request; r = urllib.request.urlopen('http://backend:8080/readyz', timeout=5); "
                        "print(r.status, r.read().decode())")
        assert probe.returncode == 0 and probe.stdout.startswith("200 "), probe.stdout + probe.stderr
        # The frontend's own client code, configured only by the image's environment.
        predict = fe.exec("/opt/venv/bin/python", "-c",
                          "from pathlib import Path; from vision_client import VisionClient; "
                          "print(VisionClient().predict(Path('/app/samples/mnist/3-3.png').read_bytes())['label'])")
        assert predict.returncode == 0 and predict.stdout.strip() == "3", predict.stdout + predict.stderr
        assert fe.exec("touch", "/app/x").returncode != 0
        # Exec-form entrypoint: Streamlit itself gets SIGTERM and exits 0 at once (no 10 s SIGKILL).
        t0 = time.monotonic()
        docker("stop", "-t", "20", fe.name)
        assert fe.inspect()["State"]["ExitCode"] == 0 and time.monotonic() - t0 < 10
        assert "Traceback" not in fe.logs()
    finally:
        fe.remove()


@pytest.mark.parametrize("expected, ok", [("7", True), ("3", False)])
def test_helm_test_hook_runs_in_backend_image(images, network, backend, tmp_path, expected, ok):
    """Runs the chart's test Pod (command, env, ConfigMap files) against the backend container,
    reachable under its Service name — and checks that a wrong expectation fails."""
    from helm_render import render, require_helm

    require_helm()  # skips without helm, fails with VISION_REQUIRE_HELM=1
    docs = render("default")
    run = translate(find(docs, "Pod")[0]["spec"], docs=docs, files_dir=tmp_path)  # its ConfigMap as files
    run.env["EXPECTED_LABEL"] = expected
    result = docker("run", "--rm", "--network", network, *run.argv(publish=False), check=False, timeout=120)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    assert ("OK" in result.stdout) is ok


# ---- the pod that runs is the pod we render -----------------------------------------------------------

# What the container itself sees, printed as JSON by the image's Python (no other tools in the image).
INSIDE = r"""
import json, os
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
def read(*paths):
    for path in paths:
        try:
            return open(path).read().strip()
        except OSError:
            pass
def writable(path):
    try:
        with open(os.path.join(path, ".probe"), "w") as f:
            f.write("x")
        os.remove(os.path.join(path, ".probe"))
        return True
    except OSError:
        return False
cpu_max = read("/sys/fs/cgroup/cpu.max")
quota, period = cpu_max.split() if cpu_max else (read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                                                  read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
env = dict(item.split("=", 1) for item in open("/proc/1/environ").read().split("\0") if "=" in item)
mounts = {}
for line in open("/proc/self/mounts"):
    dev, point, kind, options = line.split()[:4]
    mounts[point] = {"type": kind, "options": options.split(",")}
def size(path):
    s = os.statvfs(path)
    return s.f_blocks * s.f_frsize
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
    "cap_eff": int(status["CapEff"], 16), "no_new_privs": int(status["NoNewPrivs"]),
    "seccomp": int(status["Seccomp"]),
    "memory_limit": int(read("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")),
    "cpu_quota": None if quota in ("max", "-1") else int(quota) / int(period),
    "root_writable": writable("/app") or writable("/"), "env": env,
    "cmdline": open("/proc/1/cmdline").read().split("\0")[:-1],
    "mounts": {p: {**m, "size": size(p), "writable": writable(p)} for p, m in mounts.items() if p in MOUNTS},
}))
"""

BACKEND_SOURCES = ["chart", "manifests"]


def rendered_backend(source: str) -> tuple[dict, list[dict]]:
    """The backend Deployment's pod template and its fellow objects, from `helm template` (chart
    defaults) or from the plain manifests' default set."""
    if source == "chart":
        from helm_render import render, require_helm

        require_helm()
        docs = render("default")
    else:
        docs = manifest_docs()
    return workload_pod(docs, "backend"), docs


@pytest.mark.parametrize("source", BACKEND_SOURCES)
def test_the_rendered_backend_pod_runs_probes_and_answers_as_rendered(images, source, tmp_path):
    """Render the Deployment, run the real image with exactly what its pod implies, check from inside
    the container that it got that (user, groups, capabilities, no-new-privileges, seccomp, memory and
    CPU limits, read-only root, each volume's type, size and writability, env and arguments), probe it
    on the pod's own schedule the way the kubelet does (startup, then readiness and liveness, on the
    probes' ports), send the assignment's curl to the API port, scrape what the pod's Prometheus
    annotations point at, then stop it as the kubelet would (preStop, SIGTERM, grace period)."""
    template, docs = rendered_backend(source)
    spec = template["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "backend")
    run = translate(spec, "backend", docs=docs, files_dir=tmp_path)
    name = f"vision-pod-{uuid.uuid4().hex[:10]}"
    docker("run", "-d", "--name", name, *run.argv())
    try:
        published = {port: docker("port", name, f"{port}/tcp").stdout.split()[0] for port in set(run.ports.values())}

        def url_for(port) -> str:
            return f"http://{published[run.ports[port] if isinstance(port, str) else int(port)]}"

        def alive() -> bool:
            return json.loads(docker("inspect", name).stdout)[0]["State"]["Running"]

        def logs() -> str:
            out = docker("logs", name, check=False)
            return (out.stdout + out.stderr)[-3000:]

        # The kubelet: the startup probe first, then readiness and liveness on their own schedules.
        try:
            took = probe_like_kubelet(run.probes["startupProbe"], url_for, alive=alive)
            for kind in ("readinessProbe", "livenessProbe"):
                probe_like_kubelet(run.probes[kind], url_for, alive=alive)
        except AssertionError as exc:
            pytest.fail(f"{source}: {exc}\n{logs()}")
        print(f"\n{source}: started (startup probe passed) after {took:.1f} s")

        # From inside: what the container really got is what the pod spec says.
        mounts = {m["mountPath"] for m in container.get("volumeMounts") or []}
        inside = json.loads(docker("exec", name, "/opt/venv/bin/python", "-c",
                                   f"MOUNTS = {sorted(mounts)!r}\n" + INSIDE).stdout)
        ctx = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        assert (inside["uid"], inside["gid"]) == (ctx["runAsUser"], ctx["runAsGroup"])
        if "fsGroup" in spec.get("securityContext", {}):
            assert spec["securityContext"]["fsGroup"] in inside["groups"]
        if "ALL" in ctx["capabilities"]["drop"]:
            assert inside["cap_eff"] == 0
        assert inside["no_new_privs"] == (1 if ctx.get("allowPrivilegeEscalation") is False else 0)
        assert inside["seccomp"] == 2  # filtered: the runtime's default profile (RuntimeDefault)
        assert inside["root_writable"] is not ctx.get("readOnlyRootFilesystem", False)
        limits = container["resources"]["limits"]
        assert inside["memory_limit"] == int(quantity(limits["memory"]))
        assert inside["cpu_quota"] == pytest.approx(quantity(limits["cpu"]))
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            seen, volume = inside["mounts"][mount["mountPath"]], volumes[mount["name"]]
            assert seen["writable"] is not mount.get("readOnly", False), mount
            empty = volume.get("emptyDir")
            if empty is not None and empty.get("medium") == "Memory":
                assert seen["type"] == "tmpfs" and "noexec" not in seen["options"], seen
                if "sizeLimit" in empty:
                    assert seen["size"] == int(quantity(empty["sizeLimit"])), seen
        for entry in container.get("env") or []:
            assert inside["env"].get(entry["name"]) == run.env[entry["name"]], entry["name"]
        image_config = json.loads(docker("image", "inspect", run.image).stdout)[0]["Config"]
        expected_argv = (container.get("command") or image_config["Entrypoint"]) + (
            container.get("args") if "args" in container else ([] if container.get("command") else
                                                                (image_config.get("Cmd") or [])))
        assert inside["cmdline"] == expected_argv

        # The assignment's curl on the pod's API port, through bash as a user would type it.
        api = next(p["containerPort"] for p in container["ports"] if p.get("name") == "http")
        sample = base64.b64encode((ROOT / "samples" / "mnist" / "7-7.png").read_bytes()).decode()
        curl = subprocess.run(
            ["bash", "-c", f"curl -sS -X POST {url_for(api)}/predict -H 'Content-Type: application/json' "
                           f"-d '{{\"base64\": {sample}}}'"], capture_output=True, text=True, timeout=30)
        answer = json.loads(curl.stdout)
        assert (answer["model"], answer["label"], answer["class_index"]) == ("mnist", "7", 7), curl.stdout

        # Prometheus finds the metrics where the pod's annotations say.
        notes = template["metadata"].get("annotations") or {}
        if notes.get("prometheus.io/scrape") == "true":
            scraped = requests.get(url_for(int(notes["prometheus.io/port"])) + notes.get("prometheus.io/path",
                                                                                         "/metrics"), timeout=5)
            assert scraped.status_code == 200 and "vision_http_requests_total" in scraped.text

        # Stop as the kubelet does: preStop, then SIGTERM, SIGKILL at the end of the grace period.
        t0 = time.monotonic()
        time.sleep(run.pre_stop_seconds)
        docker("stop", "-t", str(int(run.grace_seconds - run.pre_stop_seconds)), name, timeout=120)
        state = json.loads(docker("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0 and not state["OOMKilled"], logs()
        assert time.monotonic() - t0 < run.grace_seconds
        assert "Traceback" not in logs()
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_the_translation_refuses_what_it_cannot_run(tmp_path):
    """A pod feature without a faithful `docker run` equivalent fails the translation instead of being
    skipped, so the rendered-pod test cannot silently test less than the pod."""
    from pod_run import Untranslatable

    template = workload_pod(manifest_docs(), "backend")
    for change in (lambda s: s.update(hostNetwork=True),
                   lambda s: s["containers"][0]["securityContext"].update(privileged=True),
                   lambda s: s["containers"][0]["securityContext"].update(runAsUser=0),
                   lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
                   or s["containers"][0]["volumeMounts"].append({"name": "host", "mountPath": "/host"}),
                   lambda s: s["containers"].append({**s["containers"][0], "name": "sidecar"})):
        spec = json.loads(json.dumps(template["spec"]))
        change(spec)
        with pytest.raises(Untranslatable):
            translate(spec, None if len(spec["containers"]) > 1 else "backend", docs=[])
    run: PodRun = translate(template["spec"], "backend", files_dir=tmp_path)
    assert run.ports and run.probes and run.env  # the backend's pod has all three to check


# ---- model releases: a model image copied in by the pod's init step ---------------------------------

def test_model_image_init_step_and_release_in_the_backend_image(images, base_image, candidates, tmp_path):
    """The pod of the chart's `releases` values, run as the kubelet would: the init container (the
    rendered command and securityContext) copies the model image's artifact into an emptyDir; the
    backend container, with the rendered env and read-only mounts, reads the release state (the
    ConfigMap's key) and serves the gated candidate — the server image was not rebuilt."""
    from helm_render import CHART, find, helm, load_docs

    from backend.releases import record

    card = json.loads((candidates["good"] / "mnist.json").read_text())
    version, ref = card["version"], f"vision-ai-model-mnist:{card['version']}"
    docker("build", "-f", str(ROOT / "Dockerfile.model"), "--build-arg", f"BASE_IMAGE={base_image}", "-t", ref,
           str(candidates["good"]))
    versions = json.dumps([{"name": "mnist", "version": version, "image": ref}])
    rendered = helm("template", "vision-ai", str(CHART), "--namespace", "vision-ai",
                    "--set-json", f"releases.versions={versions}").stdout
    pod = find(load_docs(rendered), "Deployment", component="backend")[0]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    backend_c = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in backend_c["volumeMounts"]}
    env = {e["name"]: e["value"] for e in backend_c["env"] if "value" in e}

    empty_dir = tmp_path / "emptydir"  # kubelet's emptyDir: a fresh world-writable host folder
    empty_dir.mkdir(mode=0o777)
    empty_dir.chmod(0o777)
    ctx = init["securityContext"]
    assert ctx["readOnlyRootFilesystem"] and ctx["capabilities"]["drop"] == ["ALL"]
    docker("run", "--rm", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           "--user", f"{ctx['runAsUser']}:{ctx['runAsGroup']}",
           "-v", f"{empty_dir}:{init['volumeMounts'][0]['mountPath']}",
           "--entrypoint", init["command"][0], ref, *init["command"][1:])
    copied = empty_dir / "mnist" / version
    assert sorted(p.name for p in copied.iterdir()) == ["mnist.json", "mnist.onnx"]

    configmap = tmp_path / "configmap"  # the state ConfigMap's key, as its volume shows it
    configmap.mkdir()
    state = record.ReleaseState(name="mnist")
    base = json.loads((ROOT / "models" / "mnist.json").read_text())["version"]
    record.start(state, version, base, "canary", 100, {}, {"passed": True}, "test")
    (configmap / "mnist.json").write_bytes(record.dumps(state))

    c = Container(BACKEND, publish=constants.BACKEND_PORT,
                  env={k: v for k, v in env.items() if k.startswith("VISION_") and k not in ("VISION_PORT",)},
                  run_flags=["-v", f"{configmap}:{mounts['release-state']}:ro",
                             "-v", f"{empty_dir}:{mounts['model-versions']}:ro"])
    try:
        c.wait_http("/readyz")
        deadline = time.monotonic() + 30
        while True:
            listing = requests.get(c.url + "/v1/models/mnist/versions", timeout=5).json()
            if listing["release"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert listing["release"] and listing["release"]["candidate"] == version, (listing, c.logs()[-3000:])
        row = next(v for v in listing["versions"] if v["version"] == version)
        assert row["role"] == "candidate" and row["served"]
        resp = requests.post(c.url + "/predict", json=sample_payload(ROOT / "samples" / "mnist" / "7-7.png"),
                             headers={"X-Client-ID": "any"}, timeout=10)
        assert resp.status_code == 200 and resp.json()["model_version"] == version, resp.text
        assert "gate" in c.logs() and '"passed": true' in c.logs()
    finally:
        c.remove()
