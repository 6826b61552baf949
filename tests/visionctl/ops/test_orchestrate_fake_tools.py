"""visionctl's real (non-dry-run) orchestration paths, with docker/k3d/helm/kubectl replaced by a
recording fake on PATH (no Kubernetes control plane can run here). The smoke test inside `up` hits
a real backend on loopback, so only the cluster tooling is simulated."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from devkit.backend_server import free_port, test_model_dir
from visionctl.cli import app
from visionctl.constants import IMAGE_TAG


@pytest.fixture(scope="module")
def server_env():
    return {"VISION_THREADS": "2"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def mutating(calls):
    """Drop the read-only queries (version checks, lists, inspects) to compare what changed."""
    skip = (["docker", "version"], ["docker", "info"], ["k3d", "version"], ["helm", "version"],
            ["kubectl", "version"], ["k3d", "cluster", "list"], ["docker", "image", "inspect"], ["helm", "status"])
    return [c for c in calls if not any(c[: len(s)] == s for s in skip)]


def test_up_runs_every_step_and_is_idempotent(fake, server, monkeypatch):
    from visionctl.ops import orchestrate
    monkeypatch.setattr(orchestrate, "MODELS_DIR", test_model_dir())  # the repo's may still be training
    (fake.state / "cluster").write_text("vision-ai")  # an existing cluster: reused, not recreated
    res = invoke("up", "--port", str(server.port), "--tunnel", "--no-train", "--base-image", "base:1")
    assert res.exit_code == 0, res.output
    calls = fake.calls()
    changed = mutating(calls)
    kube = ["--context", "k3d-vision-ai", "--namespace", "vision-ai"]
    assert changed[0][:2] == ["docker", "build"] and "BASE_IMAGE=base:1" in changed[0]
    assert changed[1][:2] == ["docker", "build"]
    assert changed[2] == ["k3d", "image", "import", f"vision-ai-backend:{IMAGE_TAG}", f"vision-ai-frontend:{IMAGE_TAG}",
                          "--cluster", "vision-ai"]
    assert changed[3] == ["kubectl", *kube, "apply", "-f", "deploy/manifests/00-namespace.yaml"]
    helm = changed[4]
    assert helm[:4] == ["helm", "upgrade", "--install", "vision-ai"]
    assert "cloudflared.enabled=true" in helm and "cloudflared.mode=quick" in helm
    ids = [a for a in helm if "podAnnotations.visionctl/image-id=sha256:" in a]
    assert len(ids) == 2  # the local image IDs roll the pods when a rebuild keeps the tag
    assert [c[5:8] for c in changed[5:8]] == [["rollout", "status", f"deployment/vision-ai-{c}"]
                                              for c in ("backend", "frontend", "cloudflared")]
    assert all(c[1:5] == kube for c in changed[5:8])
    assert not any(c[:3] == ["k3d", "cluster", "create"] for c in calls)
    # the real smoke test went through the (real) server, the tunnel URL came via port-forward
    assert "smoke test: label 7" in res.output
    assert "https://quiet-fox-example.trycloudflare.com" in res.output
    assert f'curl -X POST "http://localhost:{server.port}/predict"' in res.output

    again = invoke("up", "--port", str(server.port), "--tunnel", "--no-train", "--base-image", "base:1")
    assert again.exit_code == 0, again.output
    # the same upgrade in place (the port-forward's local port is random), nothing created
    assert mutating(fake.calls())[:8] == changed[:8]


def test_cluster_create_when_absent_then_reuse(fake):
    port = free_port()
    assert invoke("cluster", "create", "--port", str(port)).exit_code == 0
    assert mutating(fake.calls()) == [
        ["k3d", "cluster", "create", "vision-ai", "-p", f"{port}:80@loadbalancer", "--wait"]]
    res = invoke("cluster", "create", "--port", str(port))
    assert res.exit_code == 0 and "exists" in res.output
    assert mutating(fake.calls()) == []


def test_cluster_create_refuses_a_taken_port(fake, server):
    res = invoke("cluster", "create", "--port", str(server.port))
    assert res.exit_code == 1
    assert f"localhost:{server.port} is already in use" in res.output and "--port" in res.output


def test_failed_step_names_step_output_and_fix(fake, server, monkeypatch):
    from visionctl.ops import orchestrate
    monkeypatch.setattr(orchestrate, "MODELS_DIR", test_model_dir())
    (fake.state / "cluster").write_text("vision-ai")
    monkeypatch.setenv("FAKE_FAIL", "helm upgrade")
    res = invoke("up", "--port", str(server.port), "--no-train", "--no-build")
    assert res.exit_code == 1
    assert "helm upgrade --install vision-ai failed" in res.stderr
    assert "simulated failure for the test" in res.stderr  # the stderr tail
    assert "what to do:" in res.stderr and "helm status vision-ai" in res.stderr
    assert not any("rollout" in c for c in fake.calls("kubectl"))  # stopped at the failing step


def test_preflight_stops_before_any_change(fake, monkeypatch):
    (fake.state / "docker-down").touch()
    res = invoke("up", "--no-train")
    assert res.exit_code == 1
    assert "preflight" in res.stderr and "docker daemon" in res.stderr and "not reachable" in res.stderr
    assert mutating(fake.calls()) == []


def test_down_uninstalls_then_deletes_and_repeats_safely(fake):
    (fake.state / "cluster").write_text("vision-ai")
    (fake.state / "release").write_text("{}")
    assert invoke("down", "--yes").exit_code == 0
    assert mutating(fake.calls()) == [
        ["helm", "uninstall", "vision-ai", "--wait", "--kube-context", "k3d-vision-ai", "--namespace", "vision-ai"],
        ["k3d", "cluster", "delete", "vision-ai"]]
    res = invoke("down", "--yes")
    assert res.exit_code == 0 and "does not exist" in res.output
    assert mutating(fake.calls()) == []


def test_down_asks_first(fake):
    (fake.state / "cluster").write_text("vision-ai")
    res = CliRunner().invoke(app, ["down"], input="n\n")
    assert res.exit_code == 1 and "Aborted" in res.output
    assert mutating(fake.calls()) == []


def test_tunnel_reads_quicktunnel(fake):
    res = invoke("tunnel", "--timeout", "10")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "https://quiet-fox-example.trycloudflare.com"
    assert any("port-forward" in c for c in fake.calls("kubectl"))


def test_status_renders_the_release(fake, server):
    pod = lambda name, comp, ready: {  # noqa: E731
        "kind": "Pod", "metadata": {"name": name, "labels": {"app.kubernetes.io/component": comp}},
        "status": {"phase": "Running", "containerStatuses": [{"ready": ready, "restartCount": 1, "state": {}}]}}
    items = [
        {"kind": "Deployment",
         "metadata": {"name": "vision-ai-backend", "labels": {"app.kubernetes.io/component": "backend"}},
         "spec": {"replicas": 2}, "status": {"readyReplicas": 2, "updatedReplicas": 2}},
        {"kind": "Deployment",
         "metadata": {"name": "vision-ai-frontend", "labels": {"app.kubernetes.io/component": "frontend"}},
         "spec": {"replicas": 1}, "status": {"readyReplicas": 1, "updatedReplicas": 1}},
        pod("vision-ai-backend-a", "backend", True), pod("vision-ai-backend-b", "backend", True),
        pod("vision-ai-frontend-a", "frontend", True),
        {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "vision-ai-backend"},
         "spec": {"minReplicas": 2, "maxReplicas": 5, "metrics": [
             {"type": "Resource", "resource": {"name": "cpu", "target": {"averageUtilization": 70}}}]},
         "status": {"currentReplicas": 2, "currentMetrics": [
             {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}},
    ]
    (fake.state / "get.json").write_text(json.dumps({"items": items}))
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["status", "--port", str(server.port)])
    assert res.exit_code == 0, res.output
    assert "vision-ai-backend-b" in res.output and "2/2" in res.output
    assert "CPU 12% / target 70%" in res.output
    assert "model mnist" in res.output and "model fashion-mnist" in res.output  # from the real API
    # unready backend → exit 1 so scripts can wait on `visionctl status`
    items[0]["status"]["readyReplicas"] = 1
    (fake.state / "get.json").write_text(json.dumps({"items": items}))
    assert invoke("status", "--port", str(server.port)).exit_code == 1


def test_status_without_a_release(fake):
    res = invoke("status", "--port", str(free_port()))
    assert res.exit_code == 1 and "nothing deployed" in res.stderr


def test_logs_passes_through_kubectl(fake):
    res = invoke("logs", "frontend", "--tail", "5")
    assert res.exit_code == 0
    assert fake.calls("kubectl") == [[
        "kubectl", "--context", "k3d-vision-ai", "--namespace", "vision-ai", "logs", "-l",
        "app.kubernetes.io/instance=vision-ai,app.kubernetes.io/component=frontend", "--all-containers",
        "--prefix", "--tail=5", "--max-log-requests=10"]]


def test_missing_tool_is_a_clear_failure(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing at all
    res = invoke("logs")
    assert res.exit_code == 1
    assert "`kubectl` is not installed or not on PATH" in res.stderr and "visionctl doctor" in res.stderr


def test_deploy_to_a_kind_context_smoke_tests_through_a_port_forward(fake, server, monkeypatch):
    """`visionctl deploy --context kind-dev`: kind's image load, the namespace, helm, the rollout,
    then a real POST /predict through `kubectl port-forward` (the fake forwards to a real server)."""
    monkeypatch.setenv("FAKE_BACKEND_PORT", str(server.port))
    res = invoke("deploy", "--context", "kind-dev", "--no-frontend")
    assert res.exit_code == 0, res.output
    changed = mutating(fake.calls())
    kube = ["kubectl", "--context", "kind-dev", "--namespace", "vision-ai"]
    assert changed[0] == ["kind", "load", "docker-image", f"vision-ai-backend:{IMAGE_TAG}", "--name", "dev"]
    assert changed[1] == kube + ["apply", "-f", "deploy/manifests/00-namespace.yaml"]
    assert changed[2][:4] == ["helm", "upgrade", "--install", "vision-ai"] and "frontend.enabled=false" in changed[2]
    assert changed[3][5:8] == ["rollout", "status", "deployment/vision-ai-backend"]
    forward = changed[4]
    assert forward[:7] == kube + ["port-forward", "svc/vision-ai-backend"] and forward[7].endswith(":8080")
    text = " ".join(res.output.replace("│", " ").split())
    assert "smoke test: label 7" in text and "port-forward svc/vision-ai-backend 8080:8080" in text


def test_deploy_fails_clearly_when_the_port_forward_finds_nothing(fake, server, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "kubectl --context kind-dev --namespace vision-ai port-forward")
    res = invoke("deploy", "--context", "kind-dev", "--no-frontend")
    assert res.exit_code == 1
    assert "port-forward failed" in res.output and "exited with 1" in res.output
