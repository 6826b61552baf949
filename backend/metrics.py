"""Prometheus metrics, on a registry owned by each app (tests build several apps in one process).

Conventions: ``vision_`` prefix, base units (seconds, bytes), ``_total`` counters, and labels whose
values come from a closed set (route templates, loaded model names, labels from the model card) —
never from raw URLs, which would let any client create unbounded time series.

With several worker processes (``VISION_WORKERS``, ``backend.runtime.supervisor``) prometheus_client runs in
its multiprocess mode (chosen by ``PROMETHEUS_MULTIPROC_DIR`` when it is imported): every worker
writes its values to files in that folder and the supervisor's metrics port
(``render_multiprocess``) aggregates all of them, so a scrape shows the whole server. Gauges say how to combine workers
(``multiprocess_mode``; ignored with one process).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

# The *_created series double the exposition size and nothing here uses them (process-wide switch).
disable_created_metrics()

# In multiprocess mode every inc()/observe() asks os.getpid() whether the process forked (a system
# call, ~0.3 µs, 20-odd times per prediction); the pid is cached here and refreshed in a forked child.
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))
if getattr(values.ValueClass, "_multiprocess", False):
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _PID[0])

# Seconds: request latency is ~1 ms for a small PNG, up to seconds for a big photo or a full batch.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SIZE_BUCKETS = tuple(float(4 ** i * 64) for i in range(10))  # 64 B .. 16 MiB
# Probability of the predicted class: ten classes put the floor at 0.1, and the top is where
# healthy traffic lives, so the buckets are finest near 1.
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
# The verdict label of vision_ood_verdicts_total, indexed by in_distribution (False, True).
VERDICTS = ("out_of_distribution", "in_distribution")


# HTTP methods used as label values; anything else (clients can send any token) is "other".
KNOWN_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
SHED_REASONS = ("overloaded", "memory", "rate_limited")

SAMPLE_INTERVAL = 1.0  # seconds between samples of tracked gauges in multiprocess mode


class Children(dict):
    """``metric.labels(*values)`` memoised by the values tuple.

    ``labels()`` validates, stringifies and looks the child up under a lock on every call (~1 µs,
    seven times per prediction; a dict lookup is ~0.05 µs). Label values here come from closed sets (see above), so
    the cache stays small; two threads missing at once both get the same child from ``labels()``.
    """

    def __init__(self, metric) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, values: tuple):
        child = self[values] = self.metric.labels(*values)
        return child


def multiprocess_mode() -> bool:
    """True when prometheus_client stores values in PROMETHEUS_MULTIPROC_DIR files (decided at import)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        self._tracked: list[tuple[Gauge, Callable[[], float]]] = []
        self._sampler: threading.Thread | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vision_http_requests", "HTTP requests by route template, model and status code.",
            ["method", "route", "model", "status"], registry=r)
        self.shed = Counter(
            "vision_http_requests_shed", "Requests refused to protect the server, by reason "
            "(overloaded: 503, the queue is full; memory: 503, the decode budget stayed full; "
            "rate_limited: 429).", ["reason"], registry=r)
        for reason in SHED_REASONS:  # export zeros so alerts and rate() work before the first event
            self.shed.labels(reason)
        self.latency = Histogram(
            "vision_http_request_duration_seconds", "End-to-end request handling time in the app.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge(
            "vision_http_requests_in_flight", "Requests currently being handled.",
            multiprocess_mode="livesum", registry=r)
        self.request_size = Histogram(
            "vision_http_request_size_bytes", "Request body size.", ["route"],
            buckets=SIZE_BUCKETS, registry=r)
        self.preprocessing = Histogram(
            "vision_preprocessing_duration_seconds",
            "Time to decode and preprocess one image (base64, image decode, 28x28 normalisation).",
            ["model"], buckets=STAGE_BUCKETS, registry=r)
        self.inference = Histogram(
            "vision_inference_duration_seconds", "ONNX Runtime time per request (one batch).",
            ["model"], buckets=STAGE_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "vision_batch_size", "Images per prediction request.", ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096), registry=r)
        self.predictions = Counter(
            "vision_predictions", "Predicted classes by model and label (the most probable class, also "
            "when strict mode abstains).", ["model", "label"], registry=r)
        self.verdicts = Counter(
            "vision_ood_verdicts", "Predictions by verdict: in_distribution or out_of_distribution (the "
            "ood_score above the model card's threshold).", ["model", "verdict"], registry=r)
        self.abstentions = Counter(
            "vision_abstentions", "Predictions answered with label null (strict mode, out of distribution).",
            ["model"], registry=r)
        self.confidence = Histogram(
            "vision_prediction_confidence", "Probability of the predicted class, per image.", ["model"],
            buckets=CONFIDENCE_BUCKETS, registry=r)
        # The model card's expectations of healthy traffic, for the drift alerts to compare with.
        self.ood_baseline = Gauge(
            "vision_model_ood_baseline_ratio", "Share of in-distribution held-out images the model card's "
            "threshold flags (ood.baseline.ood_share).", ["model"], multiprocess_mode="livemax", registry=r)
        self.class_share_baseline = Gauge(
            "vision_model_class_share_baseline", "Share of each class in the model card's baseline "
            "(ood.baseline.class_share).", ["model", "label"], multiprocess_mode="livemax", registry=r)
        self.model_info = Gauge(
            "vision_model_info", "Loaded models (value is always 1).", ["model", "version"],
            multiprocess_mode="livemax", registry=r)
        # Tracked by backend.runtime.server from Waitress's task queue (replaces its per-request log warning).
        self.queue_depth = Gauge("vision_http_queue_depth", "Requests waiting for a free worker thread.",
                                 multiprocess_mode="livesum", registry=r)
        # With several workers: 1 only when every live worker is ready.
        self.ready = Gauge("vision_ready", "1 when every model is loaded and warm and not draining.",
                           multiprocess_mode="livemin", registry=r)
        # The labelled children the per-request path updates, e.g. ``latency_by[(route,)]``.
        self.requests_by = Children(self.requests)
        self.latency_by = Children(self.latency)
        self.request_size_by = Children(self.request_size)
        self.preprocessing_by = Children(self.preprocessing)
        self.inference_by = Children(self.inference)
        self.batch_size_by = Children(self.batch_size)
        self.predictions_by = Children(self.predictions)
        self.verdicts_by = Children(self.verdicts)
        self.abstentions_by = Children(self.abstentions)
        self.confidence_by = Children(self.confidence)

    def add_model(self, name: str, labels, ood_share: float, class_share: dict[str, float]) -> None:
        """Export a loaded model's prediction series at zero (so rates and the class-mix sum see every
        class before its first prediction) and its card's baseline."""
        for label in labels:
            self.predictions_by[(name, label)]
            self.class_share_baseline.labels(name, label).set(class_share.get(label, 0.0))
        for verdict in VERDICTS:
            self.verdicts_by[(name, verdict)]
        self.abstentions_by[(name,)]
        self.confidence_by[(name,)]
        self.ood_baseline.labels(name).set(ood_share)

    def observe_prediction(self, model: str, label: str, confidence: float, in_distribution: bool,
                           abstained: bool) -> None:
        """One image's prediction (cached children: a few dict lookups and increments)."""
        self.predictions_by[(model, label)].inc()
        self.confidence_by[(model,)].observe(confidence)
        self.verdicts_by[(model, VERDICTS[in_distribution])].inc()
        if abstained:
            self.abstentions_by[(model,)].inc()

    @staticmethod
    def method_label(method: str) -> str:
        return method if method in KNOWN_METHODS else "other"

    def track(self, gauge: Gauge, fn: Callable[[], float]) -> None:
        """Keep ``gauge`` equal to ``fn()``: read at scrape time with one process; sampled every
        ``SAMPLE_INTERVAL`` s in multiprocess mode, where a scrape only reads the workers' files."""
        if not self.multiprocess:
            gauge.set_function(fn)
            return
        gauge.set(fn())
        self._tracked.append((gauge, fn))
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sample, name="metrics-sampler", daemon=True)
            self._sampler.start()

    def refresh(self) -> None:
        """Sample the tracked gauges now (after a state change such as ready or draining)."""
        for gauge, fn in list(self._tracked):
            gauge.set(fn())

    def _sample(self) -> None:
        while True:
            time.sleep(SAMPLE_INTERVAL)
            self.refresh()

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:  # every worker's files, not just this process's values
            return render_multiprocess()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def render_multiprocess(path: str | None = None) -> tuple[bytes, str]:
    """Every worker's values, added up from the files in ``path`` (default: PROMETHEUS_MULTIPROC_DIR).
    The supervisor serves this on the metrics port; it needs no multiprocess mode of its own."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry), CONTENT_TYPE_LATEST
