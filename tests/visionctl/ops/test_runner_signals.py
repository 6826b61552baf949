"""SIGTERM to a long-running visionctl command leaves no child behind: `ui` (Streamlit), `serve`
(the supervisor's workers) and `logs --follow` (kubectl). A process manager, a terminal closing
or `kill` all send SIGTERM/SIGHUP to visionctl only, not to its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from repo import ROOT

from devkit.backend_server import free_port, test_model_dir


def children(pid: int) -> set[int]:
    """All live descendants of ``pid`` (from /proc: every process's parent)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
    return subprocess.Popen([sys.executable, "-m", "visionctl", *args], cwd=ROOT, env={**base, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_children(proc: subprocess.Popen, count: int, timeout: float = 90) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"visionctl exited early with {proc.returncode}"
        kids = children(proc.pid)
        if len(kids) >= count:
            time.sleep(1.0)  # let the child finish starting (its own signal handlers, its workers)
            return children(proc.pid)
        time.sleep(0.2)
    raise AssertionError(f"visionctl started {len(children(proc.pid))} children, expected {count}")


def terminate_and_check(proc: subprocess.Popen, kids: set[int], timeout: float = 40) -> int:
    proc.send_signal(signal.SIGTERM)  # visionctl only, as systemd or `kill <pid>` would
    try:
        code = proc.wait(timeout)
    finally:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(k) for k in kids):
            time.sleep(0.1)
        survivors = [k for k in kids if alive(k)]
        for k in survivors:
            os.kill(k, signal.SIGKILL)
    assert not survivors, f"children outlived visionctl: {survivors}"
    return code


def test_sigterm_to_ui_stops_streamlit():
    proc = start(["ui", "--port", str(free_port()), "--api-url", "http://127.0.0.1:9"])
    kids = wait_for_children(proc, 1)
    terminate_and_check(proc, kids)


def wait_until_ready(proc: subprocess.Popen, port: int, timeout: float = 90) -> None:
    """Until /readyz answers 200: a SIGTERM while workers still load models is a failed start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"visionctl serve exited early with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("visionctl serve never became ready")


def test_sigterm_to_serve_stops_every_worker():
    port = free_port()
    proc = start(["serve", "--port", str(port), "--metrics-port", "0", "--models-dir", str(test_model_dir()),
                  "--workers", "2", "--threads", "2"])
    wait_until_ready(proc, port)
    kids = wait_for_children(proc, 2)
    assert terminate_and_check(proc, kids) == 0


@pytest.fixture
def endless_kubectl(tmp_path):
    """A kubectl on PATH whose `logs --follow` never ends, like the real one on a live pod."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "kubectl"
    tool.write_text("#!/bin/sh\necho 'backend-0 | started'\nexec sleep 600\n")
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_sigterm_to_logs_follow_stops_kubectl(endless_kubectl):
    proc = start(["logs", "backend", "--follow"], env=endless_kubectl)
    kids = wait_for_children(proc, 1)
    terminate_and_check(proc, kids)
