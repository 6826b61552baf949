"""Which version answers a request, and the comparison copies that run beside it.

A :class:`Route` is an immutable snapshot per name (stable, candidate, mode, weight), replaced whole
when the release state changes, so a request reads one consistent snapshot without a lock.
Comparisons (shadow copies, and stable's answer for canary requests) run on one background
thread fed by a bounded queue: when it is full the copy is dropped and counted, never waited for.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import zlib
from dataclasses import dataclass

from backend.releases.gate import probabilities
from backend.releases.metrics import ReleaseMetrics

log = logging.getLogger("backend.releases")

QUEUE_SIZE = 256


@dataclass(frozen=True)
class Route:
    name: str
    stable: object  # backend.model.inference.Model
    candidate: object | None = None
    mode: str | None = None
    weight: int = 0
    started_at: str | None = None

    def pick(self, client_key: bytes | None):
        """Canary: the candidate for ``weight`` % of requests, sticky per client key when one is sent."""
        if self.candidate is None or self.mode != "canary" or not self.weight:
            return self.stable
        bucket = zlib.crc32(client_key) % 100 if client_key else random.randrange(100)
        return self.candidate if bucket < self.weight else self.stable

    def version(self, version: str):
        for model in (self.stable, self.candidate):
            if model is not None and model.card.version == version:
                return model
        return None


def in_distribution(result):
    return getattr(result, "in_distribution", None)


class Comparer:
    """Runs the other version on a copy of a request's images, off the request thread."""

    def __init__(self, metrics: ReleaseMetrics):
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._loop, name="release-compare", daemon=True)
        self._thread.start()

    def submit(self, route: Route, batch, served_probs, candidate_served: bool) -> None:
        try:
            self._queue.put_nowait((route, batch, served_probs, candidate_served))
        except queue.Full:
            self.metrics.dropped.labels(route.name).inc()

    def _loop(self) -> None:
        while True:
            route, batch, served, candidate_served = self._queue.get()
            try:
                self._compare(route, batch, served, candidate_served)
            except Exception:  # a comparison must never take the thread down
                log.exception("comparison failed", extra={"fields": {"model": route.name}})

    def _compare(self, route: Route, batch, served, candidate_served: bool) -> None:
        name, candidate = route.name, route.candidate
        other = route.stable if candidate_served else candidate
        start = time.perf_counter()
        try:
            result = other.predict(batch)
        except Exception:
            if other is candidate:
                self.metrics.errors.labels(name, candidate.card.version).inc()
            raise
        probs = probabilities(result)
        role = "compare" if candidate_served else "shadow"  # stable re-run to compare, or the shadow copy
        seconds = time.perf_counter() - start
        self.metrics.observe(name, other.card.version, role, seconds, probs, in_distribution(result))
        stable_probs, cand_probs = (probs, served) if candidate_served else (served, probs)
        agree = int((stable_probs.argmax(axis=1) == cand_probs.argmax(axis=1)).sum())
        version = candidate.card.version
        if agree:
            self.metrics.compared_by[(name, version, "agree")].inc(agree)
        if len(probs) - agree:
            self.metrics.compared_by[(name, version, "disagree")].inc(len(probs) - agree)
