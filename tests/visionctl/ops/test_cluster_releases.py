"""`visionctl release ... --context` with the repository's fake docker/k3d/helm/kubectl: the model
image is built and loaded, the chart's `releases.versions` gets it, the state ConfigMap is created and
replaced with its resourceVersion, and `release judge` adds the pods' live figures up."""

from __future__ import annotations

import json
import shutil

import pytest
from repo import MODELS
from typer.testing import CliRunner

from visionctl.cli import app

CONTEXT = "k3d-vision-ai"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A working directory whose ./models is a copy of the shipped base models (the versions store)."""
    (tmp_path / "work" / "models").mkdir(parents=True)
    for f in [*MODELS.glob("*.onnx"), *MODELS.glob("*.json")]:
        shutil.copy(f, tmp_path / "work" / "models")
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "work" / "models"


def configmap(fake) -> dict:
    return json.loads((fake.state / "configmap.json").read_text())


def state_of(fake, name="mnist") -> dict:
    return json.loads(configmap(fake)["data"][f"{name}.json"])


def test_start_ships_a_model_image_then_writes_the_state(fake, checkout, candidates):
    good = json.loads((candidates["good"] / "mnist.json").read_text())["version"]
    result = invoke("release", "start", "mnist", str(candidates["good"]), "--weight", "20", "--context", CONTEXT)
    assert result.exit_code == 0, result.output
    calls = fake.calls()
    ref = f"vision-ai-model-mnist:{good}"
    build = next(c for c in calls if c[:2] == ["docker", "build"])
    assert build[build.index("-t") + 1] == ref and build[-1].endswith(f"models/versions/mnist/{good}")
    assert build[build.index("-f") + 1].endswith("Dockerfile.model")
    assert ["k3d", "image", "import", ref, "--cluster", "vision-ai"] in calls
    upgrade = next(c for c in calls if c[:2] == ["helm", "upgrade"])
    assert "--reuse-values" in upgrade and "--kube-context" in upgrade
    assert json.loads((fake.state / "values.json").read_text())["releases"]["versions"] == [
        {"name": "mnist", "version": good, "image": ref}]
    # order: the pods carry the version (rollout done) before the state names it
    order = [i for i, c in enumerate(calls) if c[:3] == ["kubectl", "--context", CONTEXT]
             and ("rollout" in c or "create" in c)]
    assert "rollout" in calls[order[0]] and "create" in calls[order[-1]]
    state = state_of(fake)
    assert state["candidate"] == good and state["mode"] == "canary" and state["weight"] == 20
    assert state["history"][-1]["action"] == "start" and state["history"][-1]["at"]
    assert configmap(fake)["metadata"]["resourceVersion"] == "1"

    status = invoke("release", "status", "mnist", "--json", "--context", CONTEXT)
    assert json.loads(status.output)["candidate"] == good
    promoted = invoke("release", "promote", "mnist", "--context", CONTEXT)
    assert promoted.exit_code == 0, promoted.output
    assert state_of(fake)["stable"] == good and configmap(fake)["metadata"]["resourceVersion"] == "2"
    assert any(c[:2] == ["kubectl", "--context"] and "replace" in c for c in fake.calls())
    back = invoke("release", "rollback", "mnist", "--context", CONTEXT)
    assert back.exit_code == 0 and state_of(fake)["stable"] != good


def test_refused_candidate_ships_nothing(fake, checkout, candidates):
    result = invoke("release", "start", "mnist", str(candidates["worse"]), "--context", CONTEXT)
    assert result.exit_code == 1
    assert "golden-set accuracy" in result.output and "floor" in result.output
    calls = fake.calls()
    assert not [c for c in calls if c[0] in ("docker", "k3d", "helm")]
    assert state_of(fake)["history"][-1]["action"] == "refused"


def test_judge_adds_up_the_pods_and_rolls_back_a_breach(fake, checkout, candidates):
    assert invoke("release", "start", "mnist", str(candidates["biased"]), "--context", CONTEXT).exit_code == 0
    candidate = state_of(fake)["candidate"]
    pods = ["vision-ai-backend-a", "vision-ai-backend-b"]
    (fake.state / "get.json").write_text(json.dumps({"items": [{"kind": "Pod", "metadata": {"name": p}}
                                                               for p in pods]}))
    live = [{"seconds": 30, "compared_images": 100, "candidate_requests": 100, "candidate_errors": 0,
             "agreement": 0.99, "error_rate": 0.0},
            {"seconds": 30, "compared_images": 100, "candidate_requests": 100, "candidate_errors": 0,
             "agreement": 0.85, "error_rate": 0.0}]
    raw = {f"/api/v1/namespaces/vision-ai/pods/{p}:8080/proxy/v1/models/mnist/versions":
           {"release": {"candidate": candidate, "live": f}} for p, f in zip(pods, live, strict=True)}
    (fake.state / "raw.json").write_text(json.dumps(raw))
    result = invoke("release", "judge", "mnist", "--context", CONTEXT)
    assert result.exit_code == 0, result.output
    assert "rollback" in result.output
    state = state_of(fake)
    entry = state["history"][-1]
    assert state["candidate"] is None and entry["action"] == "rollback" and entry["actor"].startswith("judge")
    assert entry["figures"]["pods"] == 2 and entry["figures"]["agreement"] == pytest.approx(0.92)
