"""docs/configuration.md's backend table is the one backend/config.py produces: scripts/configuration.py
--check fails when a default, a range, a variable or a meaning changes without regenerating it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from repo import ROOT


def check(root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "scripts" / "configuration.py"), "--check"], cwd=root,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def copy(tmp_path):
    for name in ("backend", "scripts", "docs"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.png"))
    return tmp_path


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def test_the_configuration_table_is_current():
    proc = check(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_the_table_names_every_variable_from_env_reads():
    """Every VISION_* name backend/config.py reads is in the document (in the table or as internal)."""
    import re

    code = set(re.findall(r'"(VISION_[A-Z0-9_]+)"', (ROOT / "backend" / "config.py").read_text()))
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert len(code) >= 25
    assert not [v for v in code if f"`{v}`" not in doc]


def test_a_changed_default_makes_it_stale(copy):
    edit(copy / "backend" / "config.py", "    threads: int = 8\n", "    threads: int = 9\n")
    proc = check(copy)
    assert proc.returncode == 1
    assert "+| `VISION_THREADS` | `9` | integer 1–256 | Waitress worker threads per process |" in proc.stdout


def test_a_changed_range_and_a_new_setting_make_it_stale(copy):
    config = copy / "backend" / "config.py"
    edit(config, 'integer("VISION_THREADS", d.threads, 1, 256)', 'integer("VISION_THREADS", d.threads, 1, 128)')
    edit(config, "    batching: bool = True\n",
         "    batching: bool = True\n    # Seconds between heartbeats.\n    heartbeat: float = 2.5\n")
    edit(config, "            batching=raw_batching",
         '            heartbeat=number("VISION_HEARTBEAT", d.heartbeat, 0.1, 60.0),\n            batching=raw_batching')
    proc = check(copy)
    assert proc.returncode == 1
    assert "+| `VISION_THREADS` | `8` | integer 1–128 |" in proc.stdout
    assert "+| `VISION_HEARTBEAT` | `2.5` | number 0.1–60 | Seconds between heartbeats |" in proc.stdout


def test_an_undocumented_setting_is_refused(copy):
    config = copy / "backend" / "config.py"
    edit(config, "    # Waitress worker threads per process.\n", "")
    proc = check(copy)
    assert proc.returncode == 1
    assert "Config.threads (VISION_THREADS) has no comment saying what it means" in proc.stderr
