"""docs/cli.md's command table is the one the Typer app produces: scripts/cli_reference.py --check
fails when a command, its help line or its options change without regenerating it."""

from __future__ import annotations

import shutil
import subprocess
import sys

from repo import ROOT


def check(root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "scripts" / "cli_reference.py"), "--check"], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_table_is_current():
    proc = check(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_a_new_option_makes_it_stale(tmp_path):
    for name in ("visionctl", "backend", "vision_client", "scripts", "docs"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.png"))
    local = tmp_path / "visionctl" / "cli" / "local.py"
    text = local.read_text()
    marker = "    as_json: Annotated[bool"
    assert marker in text
    local.write_text(text.replace(marker, '    verbose: Annotated[bool, typer.Option("--loud")] = False,\n' + marker))
    proc = check(tmp_path)
    assert proc.returncode == 1
    assert "`--timeout` `--loud` `--json`" in proc.stdout
