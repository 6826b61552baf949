"""The two planes of a real ``python -m backend``: the API port has no /metrics (the API's JSON 404),
the metrics port (``VISION_METRICS_PORT``) serves only it — owned by the single server process, or
by the supervisor for all its workers — and the API's open pages are rate-limited like the API."""

from __future__ import annotations

import base64
import json
import signal
import socket
import time

import pytest
import requests
from api_errors import assert_error
from repo import SAMPLES

from devkit.backend_server import BackendServer, test_model_dir

BODY = {"base64": base64.b64encode((SAMPLES / "mnist" / "8-8.png").read_bytes()).decode()}
KEY = "metrics-port-test-key-0123"


def _log_lines(srv: BackendServer) -> list[dict]:
    return [json.loads(line) for line in srv.logs().splitlines() if line.startswith("{")]


def _value(text: str, name: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_only_on_the_metrics_port(workers):
    with BackendServer(model_dir=test_model_dir(), env={"VISION_WORKERS": workers, "VISION_THREADS": "2"}) as srv:
        # /readyz answers once one worker is ready; vision_ready is the minimum over all of them.
        deadline, scrapes = time.monotonic() + 60, 0
        while True:
            scrapes += 1
            if _value(srv.metrics(), "vision_ready") == 1.0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert requests.post(srv.url + "/predict", json=BODY, timeout=10).json()["label"] == "8"
        assert_error(requests.get(srv.url + "/metrics", timeout=5), 404, "not_found", "no such endpoint")
        assert_error(requests.get(srv.url + "/metrics/", timeout=5), 404, "not_found")
        resp = requests.get(srv.metrics_url, timeout=5)
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
        text = resp.text
        assert _value(text, "vision_ready") == 1.0
        assert 'vision_http_requests_total{method="POST",model="mnist",route="/predict",status="200"} 1.0' in text
        # The API's 404s for /metrics are counted like any unknown path...
        assert 'vision_http_requests_total{method="GET",model="",route="unmatched",status="404"} 2.0' in text
        assert 'route="/metrics"' not in text
        # ...and the scrapes by the metrics port
        assert _value(text, "vision_metrics_scrapes_total") == scrapes + 1
        assert _value(srv.metrics(), "vision_metrics_scrapes_total") == scrapes + 2
        # The metrics port serves nothing else, and nothing but GET.
        base = srv.metrics_url.removesuffix("/metrics")
        for path in ("/", "/healthz", "/predict", "/metricsx"):
            assert_error(requests.get(base + path, timeout=5), 404, "not_found", "serves only GET /metrics")
        resp = requests.post(srv.metrics_url, data=b"x", timeout=5)
        assert_error(resp, 405, "method_not_allowed")
        assert resp.headers["Allow"] == "GET"
    # Printed at start by the process that owns it: the server, or the supervisor and no worker.
    lines = _log_lines(srv)
    owner = "workers started" if workers != "1" else "listening"
    assert [e["metrics_url"] for e in lines if "metrics_url" in e] == [srv.metrics_url]
    assert next(e for e in lines if "metrics_url" in e)["message"] == owner


def test_the_metrics_port_keeps_answering_while_the_api_drains():
    """A scrape during the drain sees the pod leave (vision_ready 0) rather than a closed port."""
    with BackendServer(model_dir=test_model_dir(), env={"VISION_DRAIN_DELAY": "30"}) as srv:
        assert _value(srv.metrics(), "vision_ready") == 1.0
        srv.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while srv.status("/readyz") != 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _value(srv.metrics(), "vision_ready") == 0.0
        srv.proc.send_signal(signal.SIGINT)
        srv.proc.wait(5)


@pytest.mark.parametrize("workers", ["1", "3"])
def test_a_busy_metrics_port_stops_the_start(workers):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        srv = BackendServer(model_dir=test_model_dir(), env={"VISION_WORKERS": workers},
                            startup_timeout=30)
        srv.metrics_port = sock.getsockname()[1]
        with pytest.raises(RuntimeError, match="exited with 1"):
            srv.start()
        srv.__exit__(None, None, None)
    assert f"/ {srv.metrics_port} (metrics)" in srv.logs()


@pytest.fixture(scope="module")
def keyed():
    """API keys on and a tight per-client limit: what is open without a key, and what is limited."""
    env = {"VISION_API_KEYS": KEY, "VISION_RATE_LIMIT": "5/minute"}
    with BackendServer(model_dir=test_model_dir(), env=env) as srv:
        yield srv


def test_metrics_port_needs_no_key_and_is_never_rate_limited(keyed):
    assert_error(requests.post(keyed.url + "/predict", json=BODY, timeout=5), 401, "unauthorized")
    for _ in range(12):  # more than the API's limit: the metrics port has no limiter, no key
        assert requests.get(keyed.metrics_url, timeout=5).status_code == 200


def test_pages_open_without_a_key_are_rate_limited_like_the_api(keyed):
    """The index, the docs page and the OpenAPI document need no key (a deliberate choice, see
    docs/ports.md) but each counts against VISION_RATE_LIMIT, per client, like any API call."""
    pages = ["/", "/docs", "/openapi.json"]
    assert [requests.get(keyed.url + p, timeout=5).status_code for p in pages] == [200, 200, 200]
    assert [requests.get(keyed.url + "/", timeout=5).status_code for _ in range(2)] == [200, 200]  # 5 of 5
    for path in pages:
        resp = requests.get(keyed.url + path, timeout=5)
        assert_error(resp, 429, "rate_limited")
        assert int(resp.headers["Retry-After"]) >= 1


def test_probes_are_open_and_never_rate_limited(keyed):
    for _ in range(12):
        assert requests.get(keyed.url + "/healthz", timeout=5).status_code == 200
        assert requests.get(keyed.url + "/readyz", timeout=5).status_code == 200
