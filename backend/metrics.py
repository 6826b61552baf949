"""Prometheus metrics, on a registry owned by each app (tests build several apps in one process).

Conventions: ``vision_`` prefix, base units (seconds, bytes), ``_total`` counters, and labels whose
values come from a closed set (route templates, loaded model names, labels from the model card) —
never from raw URLs, which would let any client create unbounded time series.
"""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

# The *_created series double the exposition size and nothing here uses them (process-wide switch).
disable_created_metrics()

# Seconds: request latency is ~1 ms for a small PNG, up to seconds for a big photo or a full batch.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SIZE_BUCKETS = tuple(float(4 ** i * 64) for i in range(10))  # 64 B .. 16 MiB


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vision_http_requests", "HTTP requests by route template, model and status code.",
            ["method", "route", "model", "status"], registry=r)
        self.latency = Histogram(
            "vision_http_request_duration_seconds", "End-to-end request handling time in the app.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge(
            "vision_http_requests_in_flight", "Requests currently being handled.", registry=r)
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
            "vision_predictions", "Predicted classes by model and label.", ["model", "label"], registry=r)
        self.model_info = Gauge(
            "vision_model_info", "Loaded models (value is always 1).", ["model", "version"], registry=r)
        # Set by backend.server from Waitress's task queue (replaces its per-request log warning).
        self.queue_depth = Gauge("vision_http_queue_depth", "Requests waiting for a free worker thread.",
                                 registry=r)
        self.ready = Gauge("vision_ready", "1 when every model is loaded and warm and not draining.",
                           registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
