"""The operator plane: ``GET /metrics`` on a port of its own (``VISION_METRICS_PORT``), not the API's.

Why a second port: the API port is published (Ingress, LoadBalancer, tunnel) and open to every
client, while the figures on /metrics (traffic, errors, model versions) are for the monitoring
stack only and a scrape costs more CPU than a prediction. On its own port the network decides who
may read it — the chart's NetworkPolicy admits the monitoring namespace and the release's own — and
the API's guard (keys, rate limits, shedding) no longer needs an exemption for it.

Who owns it: one listener per process group, bound on the API's host. A single server process
serves it itself; with ``VISION_WORKERS`` > 1 the supervisor does (its workers bind none, so they
cannot clash), adding up every worker's multiprocess files as any worker's scrape used to.

Cheap: a small Waitress server of its own (own event loop and map, one thread, no Flask). Scrapes
are served one at a time, so even a flood of them costs at most one thread; connections are bounded
in number and idle time like the API's.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from waitress import wasyncore
from waitress.server import create_server

from backend.contract import INTERNAL_ERROR, METHOD_NOT_ALLOWED, NOT_FOUND

log = logging.getLogger("backend.metrics_server")

PATH = "/metrics"
Render = Callable[[], tuple[bytes, str]]  # → (exposition body, content type), e.g. Metrics.render


class _Scrapes:
    """``vision_metrics_scrapes_total``: raised by every scrape and back at 0 in a new process, so a
    reset of it means the pod's server restarted (the VisionAIWorkersRestarting alert). A plain
    collector, not a prometheus_client Counter: its value must live in this process even where the
    library runs in multiprocess mode (a supervisor started with PROMETHEUS_MULTIPROC_DIR set)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def inc(self) -> None:
        with self._lock:
            self.count += 1

    def collect(self):
        yield CounterMetricFamily("vision_metrics_scrapes", "Scrapes of the metrics port by this process group "
                                  "(a reset means the server restarted).", value=self.count)


def _json(start_response, status: str, code: str, message: str, headers=()) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]


def metrics_app(render: Render):
    """WSGI app answering ``GET /metrics`` with ``render()`` plus the scrape counter; every other path
    is the API's JSON 404, every other method a 405."""
    scrapes = _Scrapes()
    own = CollectorRegistry(auto_describe=False)
    own.register(scrapes)

    def app(environ, start_response):
        path, method = environ.get("PATH_INFO") or "/", environ.get("REQUEST_METHOD", "GET")
        if path != PATH:
            return _json(start_response, "404 Not Found", NOT_FOUND,
                         f"no such endpoint: {method[:16]} {path[:200]} (this port serves only GET {PATH})")
        if method != "GET":
            return _json(start_response, "405 Method Not Allowed", METHOD_NOT_ALLOWED,
                         f"{method[:16]} is not allowed on {PATH}; use GET", [("Allow", "GET")])
        scrapes.inc()
        try:
            body, content_type = render()
        except Exception as exc:  # a broken multiprocess file must not kill the listener
            log.error("rendering the metrics failed", exc_info=exc)
            return _json(start_response, "500 Internal Server Error", INTERNAL_ERROR, "rendering the metrics failed")
        body += generate_latest(own)
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [body]

    app.scrapes = scrapes
    return app


class MetricsServer:
    """``metrics_app(render)`` on ``host:port``, bound at construction (a busy port fails at once);
    ``start()`` serves it from a daemon thread, ``close()`` stops it."""

    def __init__(self, host: str, port: int, render: Render):
        self.host = host
        self.map: dict = {}
        self.waitress = create_server(
            metrics_app(render), map=self.map, host=host, port=port, threads=1, ident="vision-ai-metrics",
            asyncore_use_poll=True, connection_limit=32, channel_timeout=10, cleanup_interval=5,
            max_request_header_size=8192, max_request_body_size=1024)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.waitress.effective_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PATH}"

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self.waitress.run, name="metrics-server", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Close the listener and its connections, from the server's own loop when it runs."""
        if self._thread is not None and self._thread.is_alive():
            self.waitress.trigger.pull_trigger(lambda: wasyncore.close_all(self.map, ignore_all=True))
            self._thread.join(timeout)
        else:
            wasyncore.close_all(self.map, ignore_all=True)
        self.waitress.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)
