"""The dependency rules of pyproject.toml's import-linter contracts hold, and breaking one fails."""

from __future__ import annotations

import pytest
from import_lint import lint, lint_with
from repo import ROOT

LAYERS = "layers: devkit > visionctl | frontend > vision_client > backend"
NO_SERVING = "the UI and the API client use no serving or training stack"


def test_contracts_are_kept():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{LAYERS} KEPT" in proc.stdout and f"{NO_SERVING} KEPT" in proc.stdout
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, violation, contract, reported", [
    ("backend/errors.py", "from visionctl import constants", LAYERS, "backend.errors -> visionctl.constants"),
    ("backend/contract.py", "import vision_client", LAYERS, "backend.contract -> vision_client"),
    ("vision_client/__init__.py", "from visionctl import constants", LAYERS, "vision_client -> visionctl.constants"),
    ("frontend/config.py", "import visionctl.constants", LAYERS, "frontend.config -> visionctl.constants"),
    ("frontend/config.py", "import onnxruntime", NO_SERVING, "frontend.config -> onnxruntime"),
    ("vision_client/__init__.py", "from backend.runtime import server", NO_SERVING,
     "vision_client -> backend.runtime.server"),
])
def test_a_wrong_way_import_breaks_the_build(tmp_path, module, violation, contract, reported):
    proc = lint_with(tmp_path, module, violation)
    assert proc.returncode != 0, proc.stdout
    assert f"{contract} BROKEN" in proc.stdout
    assert reported in proc.stdout, proc.stdout
