"""Budgets a request is admitted against from its headers, before its body is read or its work starts.

* :class:`SpoolBudget` — request bodies over Waitress's in-memory limit are written to a temporary
  file. In the pod ``/tmp`` is a small memory-backed ``emptyDir``: a few held-open uploads would fill
  it, and every later upload would then fail mid-write with a connection reset. Each spooled body
  reserves its bytes here first (its ``Content-Length``, or chunk by chunk as a chunked body grows);
  the budget is smaller than ``/tmp``, so a body that does not fit is answered 503 + ``Retry-After``.
* :class:`ExplainBudget` — one explanation costs ~25 predictions of CPU. Explanations get their own
  concurrency (``running`` at once, ``queued`` more waiting) and a share of one CPU (a token bucket
  charged with each explanation's duration); beyond either, 503 + ``Retry-After``, so a flood of
  them cannot take the threads and the CPU that ``/predict`` and the probes need.

Thread-safe: the guard admits from Waitress's event-loop thread, the views run in its worker threads.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager

from backend.contract import OVERLOADED
from backend.errors import ApiError


class SpoolBudget:
    def __init__(self, total_bytes: int):
        self.total = total_bytes
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` if they fit (never waits: the caller is the event loop)."""
        with self._lock:
            if self.used + nbytes > self.total:
                return False
            self.used += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes


class ExplainBudget:
    def __init__(self, running: int, queued: int, cpu_share: float, wait: float, burst_seconds: float = 1.0):
        self.slots = running + queued  # admitted explanations: running or waiting for a run slot
        self.cpu_share = cpu_share  # seconds of explaining allowed per second, on average
        self.burst = burst_seconds
        self.wait = wait
        self._tokens = burst_seconds
        self._stamp = time.monotonic()
        self._admitted = 0
        self._lock = threading.Lock()
        self._run = threading.Semaphore(running)

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.cpu_share)
        self._stamp = now

    def admit(self) -> float | None:
        """Take an admission slot: None when admitted, else the seconds to wait before retrying."""
        with self._lock:
            now = time.monotonic()
            self._refill(now)
            if self._tokens <= 0:
                return -self._tokens / self.cpu_share
            if self._admitted >= self.slots:
                return 1.0
            self._admitted += 1
            return None

    def leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    @contextmanager
    def running(self):
        """Run one explanation: wait (bounded) for a run slot, charge its duration to the CPU bucket.

        The duration is wall-clock time, an upper bound of the CPU one explanation uses (ONNX Runtime
        runs it on one thread; waiting for the GIL only makes the charge more conservative)."""
        if not self._run.acquire(timeout=self.wait):
            raise overloaded("explanations", 1.0)
        start = time.monotonic()
        try:
            yield
        finally:
            self._run.release()
            with self._lock:
                now = time.monotonic()
                self._refill(now)
                self._tokens -= now - start


def overloaded(what: str, retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(f"the server's budget for {what} is used up; retry in {seconds} s", code=OVERLOADED,
                    headers={"Retry-After": str(seconds)}, shed="overloaded")
