"""CLI tests: --help everywhere, usage errors, `up --dry-run` and friends as exact command plans,
`doctor` against a PATH of fake tools, `predict` and `serve` against the real backend on loopback."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from repo import ROOT, SAMPLES
from typer.testing import CliRunner

from devkit.backend_server import free_port, test_model_dir
from visionctl.cli import app
from visionctl.constants import IMAGE_TAG
from visionctl.ops import orchestrate
from visionctl.ops.deploy import ChartOptions, Target
from visionctl.ops.runner import Runner

COMMANDS = ["train", "export", "evaluate", "doctor", "up", "down", "status", "logs", "tunnel", "predict",
            "serve", "ui", "build", "deploy", "cluster", "cluster create", "cluster delete"]


def invoke(*args: str, **kw):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, **kw)


def plan_lines(output: str) -> list[str]:
    """The command lines of a printed plan (the indented line under each numbered title)."""
    lines = output.splitlines()
    return [lines[i + 1].strip() for i, line in enumerate(lines[:-1]) if line[:3].strip().rstrip(".").isdigit()]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("VISION_BASE_IMAGE", "VISION_API_URL", "VISION_API_KEY", "VISION_API_TIMEOUT",
                 "VISION_CLUSTER", "VISION_HOST_PORT"):
        monkeypatch.delenv(name, raising=False)


# -- help and usage ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    res = invoke(*command.split(), "--help")
    assert res.exit_code == 0
    assert "Usage:" in res.output


def test_no_args_shows_help():
    res = CliRunner().invoke(app, [])
    assert "Commands" in res.output and "up" in res.output


@pytest.mark.parametrize("args", [
    ["up", "--port", "0"], ["up", "--tunnel-mode", "sideways"], ["logs", "database"],
    ["predict"], ["predict", "/no/such/file.png"], ["predict", "--model", "cifar", "x"],
    ["build", "--only", "db"], ["serve", "--port", "70000"], ["cluster"], ["up", "--values", "/no/such.yaml"],
])
def test_usage_errors_exit_2(args):
    assert CliRunner().invoke(app, args).exit_code == 2


# -- dry-run plans -------------------------------------------------------------------------------

HELM = ["helm upgrade --install vision-ai charts/vision-ai --create-namespace --kube-context k3d-{c}"
        " --namespace vision-ai"
        " --set backend.image.repository=vision-ai-backend --set backend.image.tag={t}"
        " --set frontend.image.repository=vision-ai-frontend --set frontend.image.tag={t}"
        " --set frontend.enabled=true"]


def expected_up_plan(*, cluster="vision-ai", port=8080, tag=IMAGE_TAG, base=None, tunnel=False, models=()):
    kubectl = f"kubectl --context k3d-{cluster} --namespace vision-ai"
    build_arg = f" --build-arg BASE_IMAGE={base}" if base else ""
    helm = HELM[0].format(c=cluster, t=tag) + f" --set cloudflared.enabled={str(tunnel).lower()}"
    if tunnel:
        helm += " --set cloudflared.mode=quick"
    helm += "".join(f" --set-string '{c}.podAnnotations.visionctl/image-id=<image ID of vision-ai-{c}:{tag}>'"
                    for c in ("backend", "frontend"))
    plan = ["docker (daemon reachable), k3d, helm, kubectl on PATH", *models,
            f"docker build -f Dockerfile.backend -t vision-ai-backend:{tag}{build_arg} .",
            f"docker build -f Dockerfile.frontend -t vision-ai-frontend:{tag}{build_arg} .",
            f"k3d cluster create {cluster} -p {port}:80@loadbalancer --wait",
            f"k3d image import vision-ai-backend:{tag} vision-ai-frontend:{tag} --cluster {cluster}",
            f"{kubectl} apply -f deploy/manifests/00-namespace.yaml",
            helm]
    plan += [f"{kubectl} rollout status deployment/vision-ai-{c} --timeout=300s"
             for c in ("backend", "frontend", *(["cloudflared"] if tunnel else []))]
    plan.append(f"POST http://localhost:{port}/predict with samples/mnist/7-7.png, expect label 7")
    if tunnel:
        plan.append("read https://*.trycloudflare.com from deployment/vision-ai-cloudflared "
                    "(/quicktunnel on :2000, else its log)")
    return plan


def model_lines(models_dir: Path) -> list[str]:
    """What the plan says about each model given what is on disk right now."""
    out = []
    for name in ("mnist", "fashion-mnist"):
        if (models_dir / f"{name}.onnx").is_file() and (models_dir / f"{name}.json").is_file():
            version = json.loads((models_dir / f"{name}.json").read_text())["version"]
            out.append(f"models/{name}.onnx (version {version})")
        else:
            out.append(f"{sys.executable} -m visionctl train {name} --models-dir models")
    return out


def test_up_dry_run_default_plan():
    res = invoke("up", "--dry-run")
    assert res.exit_code == 0, res.output
    assert plan_lines(res.output) == expected_up_plan(models=model_lines(ROOT / "models"))
    assert "(if absent)" in res.output  # cluster creation is conditional
    assert 'curl -X POST "http://localhost:8080/predict" -H "Content-Type: application/json" -d \'{"base64": "' \
        in res.output


def test_up_dry_run_with_flags_and_env(monkeypatch):
    monkeypatch.setenv("VISION_BASE_IMAGE", "mirror.local/python:3.11-slim")
    res = invoke("up", "--dry-run", "--cluster", "demo", "--port", "9090", "--tunnel", "--tag", "1.2.3")
    assert res.exit_code == 0, res.output
    assert plan_lines(res.output) == expected_up_plan(cluster="demo", port=9090, tag="1.2.3", tunnel=True,
                                                      base="mirror.local/python:3.11-slim",
                                                      models=model_lines(ROOT / "models"))


def test_up_plan_trains_missing_models_in_order(tmp_path):
    (tmp_path / "mnist.onnx").write_bytes(b"x")  # no card: not a usable model
    runner = Runner(dry_run=True)
    orchestrate.ensure_models(runner, tmp_path, data_dir=Path("/data/idx"))
    assert [item.argv[3:5] for item in runner.plan] == [["train", "mnist"], ["train", "fashion-mnist"]]
    assert runner.plan[0].argv[-2:] == ["--data-dir", "/data/idx"]


def test_no_train_with_missing_model_fails(tmp_path):
    from visionctl.ops.runner import StepFailed

    with pytest.raises(StepFailed, match="mnist.onnx or its model card is missing"):
        orchestrate.ensure_models(Runner(dry_run=True), tmp_path, train=False)


def test_up_dry_run_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tool at all: a dry run must not need them
    res = invoke("up", "--dry-run", "--no-build")
    assert res.exit_code == 0, res.output
    assert "helm upgrade --install vision-ai charts/vision-ai" in res.output and "would be ready at" in res.output


def test_values_files_are_passed_to_helm(tmp_path):
    values = tmp_path / "keys.yaml"
    values.write_text("apiKeys: {enabled: true}\n")
    runner = Runner(dry_run=True)
    orchestrate.deploy.install(runner, Target(), ChartOptions(values_files=[values]))
    argv = runner.plan[0].argv
    assert argv[argv.index("--values") + 1] == str(values)


def test_down_dry_run():
    res = invoke("down", "--dry-run")
    assert res.exit_code == 0
    assert plan_lines(res.output) == [
        "helm uninstall vision-ai --wait --kube-context k3d-vision-ai --namespace vision-ai",
        "k3d cluster delete vision-ai"]
    res = invoke("down", "--dry-run", "--keep-cluster", "--cluster", "x")
    assert plan_lines(res.output) == ["helm uninstall vision-ai --wait --kube-context k3d-x --namespace vision-ai"]


def test_build_dry_run():
    res = invoke("build", "--dry-run", "--base-image", "b:1", "--only", "frontend", "--tag", "t1")
    assert res.exit_code == 0
    assert plan_lines(res.output) == [
        "docker build -f Dockerfile.frontend -t vision-ai-frontend:t1 --build-arg BASE_IMAGE=b:1 ."]


def test_cluster_and_deploy_dry_run():
    res = invoke("cluster", "create", "--dry-run", "--port", "8181")
    assert plan_lines(res.output) == ["k3d cluster create vision-ai -p 8181:80@loadbalancer --wait"]
    res = invoke("cluster", "delete", "--dry-run", "-c", "other")
    assert plan_lines(res.output) == ["k3d cluster delete other"]
    res = invoke("deploy", "--dry-run")
    assert res.exit_code == 0
    lines = plan_lines(res.output)
    assert lines[0].startswith("k3d image import") and lines[1].endswith("apply -f deploy/manifests/00-namespace.yaml")
    assert lines[2].startswith("helm upgrade --install")
    assert lines[-1].startswith("POST http://localhost:8080/predict")


BACKEND, FRONTEND = f"vision-ai-backend:{IMAGE_TAG}", f"vision-ai-frontend:{IMAGE_TAG}"
LOADS = {
    "k3d-demo": [["k3d", "image", "import", BACKEND, FRONTEND, "--cluster", "demo"]],
    "kind-dev": [["kind", "load", "docker-image", BACKEND, FRONTEND, "--name", "dev"]],
    "minikube": [["minikube", "image", "load", BACKEND, "-p", "minikube"],
                 ["minikube", "image", "load", FRONTEND, "-p", "minikube"]],
    "default": [["docker", "save", "-o", "/tmp/vision-ai-images.tar", BACKEND, FRONTEND],
                ["sudo", "-n", "k3s", "ctr", "images", "import", "/tmp/vision-ai-images.tar"]],
    "docker-desktop": [],
}


@pytest.mark.parametrize("context", LOADS)
def test_deploy_context_plan_loads_images_the_clusters_way(context):
    runner = Runner(dry_run=True)
    opts = orchestrate.UpOptions(target=Target(kube_context=context))
    result = orchestrate.deploy_to_context(runner, opts)
    commands = [item.argv for item in runner.plan if item.argv]
    loads = commands[:len(LOADS[context])]
    assert loads == LOADS[context]
    kube = ["kubectl", "--context", context, "--namespace", "vision-ai"]
    rest = commands[len(loads):]
    assert rest[0] == kube + ["apply", "-f", "deploy/manifests/00-namespace.yaml"]
    assert rest[1][:4] == ["helm", "upgrade", "--install", "vision-ai"]
    assert rest[1][rest[1].index("--kube-context") + 1] == context
    assert "frontend.enabled=true" in rest[1]
    assert [c[5:8] for c in rest[2:]] == [["rollout", "status", f"deployment/vision-ai-{c}"]
                                          for c in ("backend", "frontend")]
    assert "port-forward svc/vision-ai-backend" in runner.plan[-1].detail
    assert "port-forward svc/vision-ai-backend 8080:8080" in result.note


def test_deploy_context_backend_only_and_unknown_context():
    res = invoke("deploy", "--dry-run", "--context", "kind-x", "--no-frontend")
    assert res.exit_code == 0, res.output
    lines = plan_lines(res.output)
    assert lines[1] == f"kind load docker-image vision-ai-backend:{IMAGE_TAG} --name x"
    assert "frontend.enabled=false" in lines[3] and not any("vision-ai-frontend --timeout" in line for line in lines)
    res = invoke("deploy", "--dry-run", "--context", "my-prod-cluster")
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "cannot tell which distribution context 'my-prod-cluster' is" in text
    assert "kubectl apply -f deploy/manifests/" in text and "port-forward" in text


@pytest.mark.parametrize("node, expected", [
    ({"metadata": {"name": "m", "labels": {"minikube.k8s.io/name": "work"}}}, ("minikube", "work")),
    ({"metadata": {"name": "dev-control-plane", "labels": {}}, "spec": {"providerID": "kind://docker/dev/dev-control-plane"}},
     ("kind", "dev")),
    ({"metadata": {"name": "docker-desktop", "labels": {}}}, ("docker-desktop", "")),
    ({"metadata": {"name": "k3d-lab-server-0", "labels": {"node.kubernetes.io/instance-type": "k3s"}}}, ("k3d", "lab")),
    ({"metadata": {"name": "pi", "labels": {"node.kubernetes.io/instance-type": "k3s"}}}, ("k3s", "")),
    ({"metadata": {"name": "gke-node", "labels": {}}, "spec": {"providerID": "gce://p/z/n"}}, None),
])
def test_renamed_contexts_are_recognised_from_their_nodes(node, expected):
    from visionctl.ops import distro
    found = distro.from_nodes("kind-dev" if expected and expected[0] == "kind" else "renamed", [node])
    assert (found and (found.name, found.cluster)) == expected


# -- doctor with a PATH of fake tools ------------------------------------------------------------

def make_tool(bin_dir: Path, name: str, stdout: str, code: int = 0, daemon_ok: bool = True) -> None:
    daemon = 'echo 27.1.1' if daemon_ok else 'echo "Cannot connect to the Docker daemon" >&2; exit 1'
    body = f'#!/bin/sh\nif [ "$1" = info ]; then {daemon}; fi\nprintf \'%s\\n\' \'{stdout}\'\nexit {code}\n'
    (bin_dir / name).write_text(body)
    (bin_dir / name).chmod(0o755)


@pytest.fixture
def tools(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def all_tools(bin_dir, **over):
    make_tool(bin_dir, "docker", over.get("docker", "27.1.1"), daemon_ok=over.get("daemon", True))
    make_tool(bin_dir, "k3d", over.get("k3d", "k3d version v5.7.4"))
    make_tool(bin_dir, "helm", over.get("helm", "v3.16.2+g13654a5"))
    make_tool(bin_dir, "kubectl", over.get("kubectl", '{"clientVersion": {"gitVersion": "v1.31.2"}}'))


def test_doctor_all_present(tools):
    all_tools(tools)
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["doctor"])
    assert res.exit_code == 0, res.output
    for version in ("27.1.1", "5.7.4", "3.16.2", "1.31.2"):
        assert version in res.output
    assert "ready for `visionctl up`" in res.output
    assert "python [serve]" in res.output  # markup-like text is shown literally


def test_doctor_missing_and_broken(tools):
    make_tool(tools, "docker", "27.1.1", daemon_ok=False)
    make_tool(tools, "helm", "v3.2.0")  # too old
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["doctor"])
    assert res.exit_code == 1
    assert "4 required check(s) failed: docker daemon, k3d, helm, kubectl" in " ".join(res.stderr.split())


def test_doctor_checks_in_detail(tools):
    from visionctl.ops import doctor
    all_tools(tools, k3d="k3d version v4.4.8", daemon=False)
    checks = {c.name: c for c in doctor.run_checks(system="Darwin")}
    assert checks["docker"].ok and checks["helm"].ok and checks["kubectl"].ok
    assert not checks["k3d"].ok and "too old (need ≥ 5.0)" in checks["k3d"].detail
    assert checks["k3d"].hint == "upgrade: brew install k3d"
    assert not checks["docker daemon"].ok and "Cannot connect" in checks["docker daemon"].detail
    assert "Docker Desktop" in checks["docker daemon"].hint
    (tools / "kubectl").unlink()
    kubectl = {c.name: c for c in doctor.run_checks(system="Windows")}["kubectl"]
    assert not kubectl.ok and "not found on PATH" in kubectl.detail and "winget" in kubectl.hint
    # the optional Python extras never fail the doctor
    assert all(not c.required for c in doctor.check_extras())


# -- predict against the real backend ------------------------------------------------------------

@pytest.fixture(scope="module")
def server_env():
    return {"VISION_THREADS": "2"}


def test_predict_table(server):
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["predict", str(SAMPLES / "mnist/7-7.png"), str(SAMPLES / "mnist/3-3.png"), "--url", server.url])
    assert res.exit_code == 0, res.output
    assert "7-7.png" in res.output and "3-3.png" in res.output and "%" in res.output


def test_predict_json_matches_api(server):
    from vision_client import VisionClient

    image = SAMPLES / "fashion-mnist/1-trouser.png"
    res = invoke("predict", str(image), "--model", "fashion-mnist", "--json", env={"VISION_API_URL": server.url})
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    direct = VisionClient(server.url).predict(image.read_bytes(), model="fashion-mnist")
    assert row["label"] == direct["label"] and row["file"] == str(image)
    assert row["probabilities"] == pytest.approx(direct["probabilities"])


def test_predict_shows_the_verdict(server, tmp_path):
    from ood_images import flagged, kept

    index, digit = kept("mnist")[0]  # a digit the model keeps, and an image it flags
    seven, noise = tmp_path / "digit.png", tmp_path / "noise.png"
    seven.write_bytes(digit)
    noise.write_bytes(flagged("mnist")[0])
    argv = ["predict", str(seven), str(noise), "--url", server.url]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, argv)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    seven, noisy = (next(line for line in lines if name in line) for name in ("digit.png", "noise.png"))
    assert "in distribution" in seven and "not a handwritten digit" not in seven
    assert "not a handwritten digit" in noisy and "abstained" not in noisy
    strict = CliRunner(env={"COLUMNS": "200"}).invoke(app, [*argv, "--strict"])
    assert strict.exit_code == 0, strict.output
    noisy = next(line for line in strict.output.splitlines() if "noise.png" in line)
    assert "none (abstained)" in noisy and "not a handwritten digit" in noisy
    rows = json.loads(invoke(*argv, "--strict", "--json").stdout)
    assert [r["in_distribution"] for r in rows] == [True, False]
    assert rows[0]["label"] == str(index) and rows[1]["label"] is None and rows[1]["reason"]


def test_predict_bad_image_exit_1(server, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    res = invoke("predict", str(SAMPLES / "mnist/1-1.png"), str(bad), "--url", server.url, "--json")
    assert res.exit_code == 1
    good, failed = json.loads(res.stdout)
    assert "label" in good and failed["error"]["status"] == 422


def test_predict_backend_down():
    res = invoke("predict", str(SAMPLES / "mnist/1-1.png"), "--url", f"http://127.0.0.1:{free_port()}")
    assert res.exit_code == 1
    assert "unavailable" in res.stderr and "visionctl serve" in res.stderr


def test_predict_bad_url():
    assert invoke("predict", str(SAMPLES / "mnist/1-1.png"), "--url", "localhost:8080").exit_code == 2


# -- serve: the real server through the CLI ------------------------------------------------------

@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_starts_answers_and_stops_gracefully(workers):
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
    proc = subprocess.Popen([sys.executable, "-m", "visionctl", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--metrics-port", str(metrics_port),
                             "--models-dir", str(test_model_dir()), "--threads", "2", "--workers", workers],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            # Workers accept nothing until their models are loaded: meanwhile a connection waits in
            # the supervisor's backlog, which a loaded machine turns into a read timeout.
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        resp = requests.post(f"http://127.0.0.1:{port}/predict",
                             json={"base64": base64.b64encode((SAMPLES / "mnist/7-7.png").read_bytes()).decode()})
        assert resp.status_code == 200 and resp.json()["model"] == "mnist"
        # Two planes: no /metrics on the API port (the API's JSON 404), the figures on the metrics port.
        api = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
        scrape = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scrape.status_code == 200
        assert 'vision_http_requests_total{method="POST",model="mnist",route="/predict",status="200"} 1.0' \
            in scrape.text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    output = proc.stdout.read()
    assert code == 0, output
    assert output.count('"message": "stopped"') == int(workers) + (workers != "1")  # + the supervisor
    assert f'"metrics_url": "http://127.0.0.1:{metrics_port}/metrics"' in output  # in the start-up log


def test_serve_rejects_bad_config(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
    env["VISION_MAX_BATCH"] = "lots"
    proc = subprocess.run([sys.executable, "-m", "visionctl", "serve", "--port", str(free_port()),
                           "--metrics-port", "0", "--models-dir", str(test_model_dir())], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "VISION_MAX_BATCH" in proc.stderr


def test_serve_missing_models(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
    proc = subprocess.run([sys.executable, "-m", "visionctl", "serve", "--port", str(free_port()),
                           "--metrics-port", "0", "--models-dir", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "visionctl train" in proc.stderr


# -- ui: the real Streamlit app through the CLI --------------------------------------------------

def test_ui_serves_the_page(server):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
    proc = subprocess.Popen([sys.executable, "-m", "visionctl", "ui", "--port", str(port), "--api-url", server.url],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        assert health is not None and health.text == "ok", proc.poll()
        assert "<title>" in requests.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the CLI stops Streamlit and exits 0
        code = proc.wait(30)
    assert code == 0, proc.stdout.read()


# -- the --set flags of `up` against the real chart ----------------------------------------------

def test_helm_flags_render_with_the_chart():
    """`helm template` with exactly the values `up` sets (schema-validated by helm): the Deployments
    that `up` waits for exist under those names, and the image-ID annotations reach the pods."""
    import shutil

    import yaml

    helm = shutil.which("helm") or shutil.which("helm", path=str(ROOT / ".tools/bin"))
    if helm is None:
        if os.environ.get("VISION_REQUIRE_HELM") == "1":
            pytest.fail("helm not found and VISION_REQUIRE_HELM=1")
        pytest.skip("helm not installed (scripts/test.sh installs it)")
    target = Target()
    opts = ChartOptions(tunnel=True, image_ids={"backend": "sha256:aaa", "frontend": "sha256:bbb"})
    argv = orchestrate.deploy.helm_argv(target, opts)
    assert argv[1:3] == ["upgrade", "--install"]
    flags = [a for a in argv[5:] if a not in ("--create-namespace",)]
    flags = [a for i, a in enumerate(flags) if a != "--kube-context" and (i == 0 or flags[i - 1] != "--kube-context")]
    out = subprocess.run([helm, "template", target.release, "charts/vision-ai", *flags], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {target.deployment(c) for c in ("backend", "frontend", "cloudflared")}
    for component, image_id in opts.image_ids.items():
        pod = deployments[target.deployment(component)]["spec"]["template"]
        assert pod["metadata"]["annotations"]["visionctl/image-id"] == image_id
        assert pod["spec"]["containers"][0]["image"] == f"vision-ai-{component}:{IMAGE_TAG}"
