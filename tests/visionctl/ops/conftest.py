"""Fixtures of the ops tests: the fake docker/k3d/kind/helm/kubectl (tests/support/fakebin)."""

from __future__ import annotations

import json
import os
import sys

import pytest
from repo import ROOT

FAKE = ROOT / "tests" / "support" / "fakebin" / "fake_tool.py"
TOOLS = ("docker", "k3d", "helm", "kubectl", "kind")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A bin dir of fakes first on PATH; returns a helper to read the recorded calls."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in TOOLS:
        launcher = bin_dir / tool
        launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$0" "$@"\n')
        launcher.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_STATE", str(state))
    monkeypatch.delenv("VISION_BASE_IMAGE", raising=False)

    class Fake:
        def calls(self, tool: str | None = None) -> list[list[str]]:
            rows = [json.loads(line) for line in log.read_text().splitlines()]
            log.write_text("")
            return [r for r in rows if tool is None or r[0] == tool]

    Fake.state = state
    return Fake()
