"""docs/architecture.md's code map (modules, their jobs, the import graphs) is the one the code
produces: scripts/architecture.py --check fails when a module is added, removed or re-wired
without regenerating it."""

from __future__ import annotations

import shutil
import subprocess
import sys

from repo import ROOT

SCRIPT = ROOT / "scripts" / "architecture.py"


def check(root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "scripts" / "architecture.py"), "--check"], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_the_code_map_is_current():
    proc = check(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_a_new_import_makes_it_stale(tmp_path):
    for name in ("devkit", "visionctl", "frontend", "vision_client", "backend", "scripts", "docs"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.png"))
    contract = tmp_path / "backend" / "contract.py"
    contract.write_text(contract.read_text() + "\nfrom backend import errors  # a new edge\n")
    proc = check(tmp_path)
    assert proc.returncode == 1
    assert "+  backend_contract[backend.contract] --> backend_errors[backend.errors]" in proc.stdout
