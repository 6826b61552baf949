"""The dependency rule of pyproject.toml's import-linter contracts holds, and breaking it fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_contracts_are_kept():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_backend_import_of_the_cli_breaks_the_build(tmp_path):
    for package in ("backend", "visionctl", "frontend"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "backend" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom visionctl import constants  # the violation\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert "backend imports neither the CLI nor the UI BROKEN" in proc.stdout
    assert "backend.errors -> visionctl" in proc.stdout
