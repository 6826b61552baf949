"""`visionctl release` against a real `visionctl serve --models-dir DIR`, exactly as the handover
is documented: export → release start (gate) → status → promote / rollback, applied without a restart."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
from repo import ROOT, SAMPLES

from devkit.backend_server import free_port


def visionctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visionctl", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}, timeout=120)


@pytest.fixture
def serve(release_models):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "visionctl", "serve", "--models-dir", str(release_models),
                             "--port", str(port), "--workers", "2", "--models", "mnist"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, process_group=0)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(url + "/readyz", timeout=5).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or slow on a busy machine
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("visionctl serve did not become ready")
        time.sleep(0.2)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def roles(url: str) -> dict[str, str]:
    versions = requests.get(f"{url}/v1/models/mnist/versions", timeout=5).json()["versions"]
    return {v["version"]: v["role"] for v in versions}


def served_version(url: str, client: str) -> str:
    body = {"base64": base64.b64encode((SAMPLES / "mnist" / "7-7.png").read_bytes()).decode()}
    r = requests.post(url + "/predict", json=body, headers={"X-Client-ID": client}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def until(fn, timeout: float = 5.0) -> float:
    """Seconds until ``fn()`` is true (fails after ``timeout``)."""
    t0 = time.monotonic()
    while not fn():
        assert time.monotonic() - t0 < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_release_cycle_against_a_running_serve(serve, release_models, candidates):
    url, models = serve, str(release_models)
    base = visionctl("release", "status", "mnist", "--json", "--models-dir", models)
    assert base.returncode == 0, base.stderr
    stable = json.loads(base.stdout)["stable"]

    refused = visionctl("release", "start", "mnist", str(candidates["worse"]), "--models-dir", models)
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    measured = re.search(r"golden-set accuracy (0\.\d+) is below the floor (0\.\d+)", message)
    assert "gate refused" in message and measured, message
    assert float(measured.group(1)) < float(measured.group(2))

    good = json.loads((candidates["good"] / "mnist.json").read_text())["version"]
    started = visionctl("release", "start", "mnist", str(candidates["good"]), "--weight", "100",
                        "--policy", "auto=false", "--models-dir", models)
    assert started.returncode == 0, started.stderr
    assert until(lambda: served_version(url, "a") == good) < 5  # applied by the running server
    # Each worker applies the state file on its own poll, so a request may still meet one that has not.
    assert until(lambda: roles(url).get(good) == "candidate") < 5

    promoted = visionctl("release", "promote", "mnist", "--models-dir", models)
    assert promoted.returncode == 0, promoted.stderr
    until(lambda: requests.get(f"{url}/readyz", timeout=5).json()["models"]["mnist"] == good)

    rolled = visionctl("release", "rollback", "mnist", "--models-dir", models)
    assert rolled.returncode == 0, rolled.stderr
    assert until(lambda: served_version(url, "b") == stable) < 5

    status = json.loads(visionctl("release", "status", "mnist", "--json", "--models-dir", models).stdout)
    assert [h["action"] for h in status["history"]] == ["refused", "start", "promote", "rollback"]
    assert all(h["at"] and h["actor"].startswith("visionctl") for h in status["history"])
    assert status["stable"] == stable and status["candidate"] is None
    text = visionctl("release", "status", "mnist", "--models-dir", models).stdout
    assert "rollback" in text and stable in text


def test_release_usage_errors(tmp_path, candidates):
    both = visionctl("release", "status", "mnist", "--models-dir", str(tmp_path), "--context", "x")
    assert both.returncode == 2 and "not both" in both.stderr
    bad = visionctl("release", "start", "mnist", str(candidates["good"]), "--policy", "nope=1",
                    "--models-dir", str(tmp_path))
    assert bad.returncode == 1 and "unknown policy key" in bad.stderr
    empty = visionctl("release", "start", "mnist", str(tmp_path), "--models-dir", str(tmp_path))
    assert empty.returncode == 1 and "visionctl export mnist --models-dir" in " ".join(empty.stderr.split())


def test_export_into_a_folder_makes_a_release_artifact(release_models, shared_datasets, tmp_path):
    """`visionctl export NAME --models-dir DIR` (the shipped weights when DIR has none) → `release start`."""
    artifact = tmp_path / "artifact"
    exported = visionctl("export", "mnist", "--models-dir", str(artifact), "--data-dir",
                         str(shared_datasets / "mnist"))
    assert exported.returncode == 0, exported.stderr
    version = json.loads((artifact / "mnist.json").read_text())["version"]
    stable = json.loads((release_models / "mnist.json").read_text())["version"]
    started = visionctl("release", "start", "mnist", str(artifact), "--mode", "shadow",
                        "--models-dir", str(release_models))
    if version == stable:  # the same weights exported the same day are the same version: nothing to release
        assert started.returncode == 1 and "already stable" in started.stderr, started.stderr
        return
    assert started.returncode == 0, started.stderr
    status = json.loads(visionctl("release", "status", "mnist", "--json", "--models-dir", str(release_models)).stdout)
    assert status["candidate"] == version and status["mode"] == "shadow" and status["weight"] == 0
