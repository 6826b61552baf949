"""Run import-linter (pyproject.toml's contracts) on the checkout or on a copy with one bad import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from repo import ROOT

LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("devkit", "visionctl", "frontend", "vision_client", "backend")


def lint(cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # Wide enough that import-linter's wrapped contract names stay on one line.
    return subprocess.run([str(LINT)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def lint_with(tmp_path: Path, module: str, violation: str) -> subprocess.CompletedProcess:
    """Lint a copy of the packages in which ``module`` (a path like backend/web/api.py) ends with the
    import statement ``violation``."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{violation}  # the violation\n")
    return lint(tmp_path)
