"""Waitress is pinned exactly where its internals are patched: pyproject.toml, the image's lock file
and backend.runtime.waitress_pin agree, and the real server refuses to start on any other release."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

from repo import ROOT

from backend.runtime.waitress_pin import WAITRESS_VERSION


def test_pyproject_the_lock_file_and_the_backend_pin_one_version():
    serve = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    assert f"waitress=={WAITRESS_VERSION}" in serve
    lock = (ROOT / "requirements" / "backend.txt").read_text()
    assert re.search(rf"^waitress=={re.escape(WAITRESS_VERSION)}$", lock, re.M)
    assert f"waitress=={WAITRESS_VERSION} " in lock.splitlines()[1]  # the header: locked from the pin


def test_the_server_refuses_another_waitress_release(tmp_path):
    """A distribution record of waitress 9.9.9 first on the path (the code itself unchanged): `python -m
    backend` exits 1 with one line naming both versions, before it binds a port."""
    info = tmp_path / "waitress-9.9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: waitress\nVersion: 9.9.9\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "VISION_WORKERS": "1",
           "VISION_PORT": "1", "VISION_MODEL_DIR": str(ROOT / "models")}
    proc = subprocess.run([sys.executable, "-m", "backend"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "waitress 9.9.9 is installed, but backend.protection.guard and backend.runtime.server patch " \
           f"the internals of waitress " \
           f"{WAITRESS_VERSION}" in proc.stderr
    assert "Traceback" not in proc.stderr
