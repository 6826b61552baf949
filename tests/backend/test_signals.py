"""Stop signals are handled on their own thread (backend.runtime.signals), so a stop can take locks.

Python runs a signal handler inside whatever the main thread was doing. The stop path sets
Prometheus gauges, and in multiprocess mode (every supervised worker) their values share one
non-reentrant lock: a handler that interrupted the main thread inside that lock waited for itself,
and the worker never exited. These tests send real signals to real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backend.runtime.signals import SignalWatcher
from devkit.backend_server import ROOT, BackendServer, test_model_dir

# The main thread creates gauge children in a loop — it holds prometheus_client's multiprocess lock
# most of the time — while each signal's handler sets a gauge too.
BUSY_MAIN_THREAD = textwrap.dedent("""
    import os, sys, tempfile, threading
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
    from prometheus_client import Gauge
    from backend.runtime.signals import SignalWatcher

    gauge = Gauge("g", "g", ["k"], multiprocess_mode="livesum")
    seen = []
    def on_signal(signum):
        gauge.labels("stop").set(signum)
        seen.append((signum, threading.current_thread() is threading.main_thread()))
    with SignalWatcher(on_signal):
        print("ready", flush=True)
        i = 0
        while len(seen) < 2:
            gauge.labels(str(i)).set(i)
            i += 1
    print(seen, flush=True)
""")


@pytest.mark.parametrize("attempt", range(3))  # the hang needed an unlucky moment; three tries
def test_a_handler_can_take_the_lock_the_interrupted_main_thread_holds(attempt):
    proc = subprocess.Popen([sys.executable, "-c", BUSY_MAIN_THREAD], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2 + 0.1 * attempt)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            out = "(killed: the handlers never finished)"
    assert proc.returncode == 0, out
    # Both signals, in order, each handled off the main thread.
    assert out.strip() == f"[({int(signal.SIGTERM)}, False), ({int(signal.SIGINT)}, False)]"


def test_closing_restores_the_previous_handlers_and_wakeup_fd():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with SignalWatcher(lambda _signum: None):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
    previous_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous_fd)
    assert previous_fd == -1


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    return bool(mask & (1 << (signum - 1)))


def _child(pid: int) -> int | None:
    """The first child of ``pid``, once it has one."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else None


@pytest.mark.parametrize("pid_1", [False, True], ids=["process", "PID 1 of its namespace"])
def test_a_stop_while_the_backend_imports_is_carried_out(pid_1):
    """``python -m backend`` catches stop signals before it imports Flask and ONNX Runtime (most of
    its first second), and a SIGTERM then ends it cleanly: no model loaded, exit 0. Without that it
    died by the signal — or, as a container's PID 1, for which the kernel drops a signal without a
    handler, it ignored the stop and served until the kubelet's SIGKILL. ``unshare --pid`` makes the
    backend PID 1 of a namespace of its own, the signal comes from outside it, as the runtime's does."""
    prefix = ("unshare", "--pid", "--fork", "--kill-child") if pid_1 else ()
    srv = BackendServer(model_dir=test_model_dir(), prefix=prefix)
    srv.launch()
    try:
        deadline = time.monotonic() + 30
        pid = None
        while time.monotonic() < deadline:
            pid = _child(srv.proc.pid) if pid_1 else srv.proc.pid
            if pid is not None and _catches(pid, signal.SIGTERM):
                break
            time.sleep(0.001)
        loaded = Path(f"/proc/{pid}/maps").read_text()
        os.kill(pid, signal.SIGTERM)
        code = srv.proc.wait(20)
    finally:
        srv.close()
    assert "onnxruntime" not in loaded, "SIGTERM is caught only once the heavy imports are done"
    assert code == 0, srv.logs()[-4000:]
    assert '"message": "stopped"' in srv.logs() and '"message": "ready"' not in srv.logs(), srv.logs()[-4000:]
