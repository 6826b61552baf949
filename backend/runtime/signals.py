"""SIGTERM/SIGINT handled on a thread of their own, never inside the main thread's interrupted code.

Why: Python runs a signal handler in the main thread, between two bytecodes of whatever it was
doing. A handler that takes a lock the interrupted code already holds waits for itself forever.
Stopping a server has to take such locks (prometheus_client's multiprocess values share one
non-reentrant lock; starting a thread takes threading's own), and the main thread holds them while
it loads models or serves. Such a stop hung a worker for good, now and then.

How: the C-level handler writes the signal's number to a pipe (``signal.set_wakeup_fd``); the Python
handler does nothing; a daemon thread reads the pipe and calls ``on_signal(signum)`` there, where
taking a lock only waits until the main thread lets go of it.

Before any watcher: ``python -m backend`` spends its first second importing Flask and ONNX Runtime.
A SIGTERM then would take the default action, and as a container's PID 1, which has no default
action, the kernel drops it: the stop is lost and the kubelet's SIGKILL ends the pod a grace period
later. :func:`hold_early` records such signals; the first watcher delivers them, in order.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("backend.signals")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _ignore(_signum, _frame) -> None:
    """The Python-level handler: everything happens on the watcher thread."""


_early: list[int] = []


def _record(signum, _frame) -> None:
    _early.append(signum)  # atomic, takes no lock: safe wherever it interrupts


def hold_early(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
    """Keep stop signals that arrive before a :class:`SignalWatcher` exists, for the first one to
    deliver. Call it first thing, on the main thread, before the heavy imports."""
    for s in signals:
        signal.signal(s, _record)


class SignalWatcher:
    """While open, each SIGTERM/SIGINT calls ``on_signal(signum)`` on the watcher thread, in order.

    Open and close it on the main thread (Python's rule for signal handlers); use it as a context
    manager. The previous handlers and wakeup fd are restored on close.
    """

    def __init__(self, on_signal: Callable[[int], None], signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.on_signal = on_signal
        self.signals = signals
        self._wanted = {int(s) for s in signals}

    def __enter__(self) -> SignalWatcher:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # set_wakeup_fd requires it: a handler must never block
        # Blocked while the handlers change: a signal in between would be recorded as early *and*
        # written to the pipe, and a second stop signal means "exit now". Held ones come first.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        try:
            self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
            self._previous = {s: signal.signal(s, _ignore) for s in self.signals}
            held = [s for s in _early if s in self._wanted]
            _early.clear()
            if held:
                os.write(self._write_fd, bytes(held))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._thread = threading.Thread(target=self._watch, name="signals", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write_fd)  # the watcher reads end-of-file and exits
        self._thread.join(5.0)

    def _watch(self) -> None:
        try:
            while chunk := os.read(self._read_fd, 64):
                for signum in chunk:
                    if signum in self._wanted:
                        try:
                            self.on_signal(signum)
                        except Exception:  # keep watching: the next signal must still be seen
                            log.exception("signal handler failed", extra={"fields": {"signal": signum}})
        finally:
            os.close(self._read_fd)
