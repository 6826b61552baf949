"""`visionctl build` for real: both Dockerfiles through the CLI's runner with the Docker engine.

Marked `docker`; without a reachable engine it skips, unless VISION_REQUIRE_DOCKER=1 (CI), where
it fails. The base image comes from VISION_BASE_IMAGE (scripts/test.sh builds one offline).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from typer.testing import CliRunner

from visionctl.cli import app
from visionctl.constants import BACKEND_IMAGE, FRONTEND_IMAGE, RUN_AS_UID

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker():
    ok = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    if not ok:
        message = "Docker engine not reachable (`docker info` failed)"
        if os.environ.get("VISION_REQUIRE_DOCKER") == "1":
            pytest.fail(message + " and VISION_REQUIRE_DOCKER=1")
        pytest.skip(message)


def test_build_both_images(docker):
    tag = f"cli-test-{uuid.uuid4().hex[:8]}"  # never clobbers the release's images
    refs = [f"{BACKEND_IMAGE}:{tag}", f"{FRONTEND_IMAGE}:{tag}"]
    try:
        res = CliRunner().invoke(app, ["build", "--tag", tag], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert f"built: {refs[0]}, {refs[1]}" in res.output
        for ref in refs:
            user = subprocess.run(["docker", "image", "inspect", "--format", "{{.Config.User}}", ref],
                                  capture_output=True, text=True, check=True).stdout.strip()
            assert user.split(":")[0] == str(RUN_AS_UID)
        # the ID that `up` passes to helm so a rebuild under the same tag rolls the pods
        from visionctl.ops import images
        from visionctl.ops.runner import Runner

        assert images.image_id(Runner(), refs[0]).startswith("sha256:")
        assert images.image_id(Runner(), f"{BACKEND_IMAGE}:no-such-tag") is None
    finally:
        subprocess.run(["docker", "image", "rm", "--no-prune", *refs], capture_output=True)


def test_build_failure_names_the_step(docker):
    res = CliRunner().invoke(app, ["build", "--only", "backend", "--tag", "cli-test-broken",
                                   "--base-image", "vision-ai.invalid/no-such-base:0"])
    assert res.exit_code == 1
    assert "build vision-ai-backend:cli-test-broken failed" in res.stderr
    assert "what to do:" in res.stderr and "--base-image" in res.stderr
