"""Flask application factory: wires config, model registry, auth, JSON errors, metrics and logs.

The routes live in ``backend.api``; this module owns the cross-cutting request lifecycle so every
response — including Flask's own 404/405/413 and genuine bugs — gets the same JSON error shape,
an ``X-Request-ID``, one access-log line and its metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from backend.budget import MemoryBudget
from backend.config import Config
from backend.errors import ApiError
from backend.inference import Registry
from backend.logs import REQUEST_ID_HEADER, request_id
from backend.metrics import Metrics
from backend.ratelimit import RateLimiter

log = logging.getLogger("backend.app")
access_log = logging.getLogger("backend.access")

# Probes, metrics and the API description stay reachable without a key (kubelet and Prometheus
# carry none, and the document reveals nothing a client could not learn from an error).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json",
                        # the index and the docs page (the page sends the key itself via "Authorize"),
                        # and the Open Inference Protocol's health probes
                        "/", "/docs", "/v2/health/live", "/v2/health/ready"})
OPEN_PREFIXES = ("/docs/",)  # the docs page's static assets


def is_open(path: str) -> bool:
    """Paths served without an API key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

# Werkzeug's HTTP errors → our stable error codes.
HTTP_ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found",
                    405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


@dataclass
class State:
    """Per-app shared state (``app.extensions["vision"]``)."""

    config: Config
    registry: Registry
    metrics: Metrics
    memory: MemoryBudget
    limiter: RateLimiter
    draining: threading.Event = field(default_factory=threading.Event)

    @property
    def ready(self) -> bool:
        return self.registry.ready.is_set() and not self.draining.is_set()

    def load_models(self) -> None:
        """Load and warm up every model (blocking), then publish them in ``vision_model_info``."""
        self.registry.load()
        for name, model in self.registry.models.items():
            self.metrics.model_info.labels(name, model.card.version).set(1)
        self.metrics.refresh()

    def start_draining(self) -> None:
        """Shutdown has begun: /readyz answers 503 from now on."""
        self.draining.set()
        self.metrics.refresh()


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    """Compact JSON without Flask's key sorting and pretty-printing (measurably cheaper per request)."""
    return Response(json.dumps(obj, separators=(",", ":"), ensure_ascii=False), status=status,
                    headers=headers, mimetype="application/json")


def get_state() -> State:
    from flask import current_app

    return current_app.extensions["vision"]


def create_app(config: Config | None = None, registry: Registry | None = None) -> Flask:
    """Build the app. Models are *not* loaded here: call ``State.load_models()`` (``backend.server`` does,
    in the background, so ``/healthz`` answers and ``/readyz`` says 503 while they load)."""
    config = config or Config.from_env()
    registry = registry or Registry(config.model_dir, config.models, batching=config.batching)
    metrics = Metrics()
    memory = MemoryBudget(config.decode_memory_mb * 2**20, config.decode_wait,
                          on_shed=lambda: metrics.shed.labels("memory").inc())
    limiter = RateLimiter(config.rate_limit, config.auth_fail_limit, config.rate_limit_storage,
                          config.trusted_proxies, on_limited=lambda: metrics.shed.labels("rate_limited").inc())
    state = State(config=config, registry=registry, metrics=metrics, memory=memory, limiter=limiter)
    metrics.track(metrics.ready, lambda: 1.0 if state.ready else 0.0)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["vision"] = state

    from backend.api import bp
    from backend.docs import bp as docs_bp
    from backend.explain import bp as explain_bp
    from backend.v2 import bp as v2_bp

    for blueprint in (bp, docs_bp, v2_bp, explain_bp):
        app.register_blueprint(blueprint)
    _install_lifecycle(app, state)
    _install_error_handlers(app, state)
    return app


def presented_key(header) -> str | None:
    """The key a client sent (``X-API-Key``, else ``Authorization: Bearer``); ``header(name)`` reads
    one request header, so Flask's request and Waitress's parser share this."""
    key = header("X-API-Key")
    if key:
        return key.strip()
    scheme, _, token = (header("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_is_valid(presented: str | None, keys: tuple[bytes, ...]) -> bool:
    """Constant-time check against every configured key (no early exit that would leak which or how
    many characters matched)."""
    if presented is None:
        return False
    candidate = presented.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(candidate, key)
    return ok


def _install_lifecycle(app: Flask, state: State) -> None:
    metrics = state.metrics
    keys = tuple(k.encode() for k in state.config.api_keys)

    # Without keys and without a request limit, who the client is does not matter: skip working it
    # out (the limiter would return at once anyway). The auth-failure limit needs keys to apply.
    identify = bool(keys) or state.limiter.rate is not None

    @app.before_request
    def start_request():
        g.start = time.perf_counter()
        req = request._get_current_object()  # one context lookup instead of one per attribute
        g.request_id = request_id(req.headers.get(REQUEST_ID_HEADER))
        g.model = ""
        metrics.in_flight.inc()
        g.in_flight = True
        if not identify:
            return
        limiter = state.limiter
        client = limiter.client_address(req.remote_addr, req.headers.get("X-Forwarded-For"))
        presented = presented_key(req.headers.get)
        if keys and not is_open(req.path) and not key_is_valid(presented, keys):
            limiter.check(client, req.path, auth_failed=True)
            raise ApiError("missing or invalid API key: send it as 'X-API-Key: <key>' or "
                           "'Authorization: Bearer <key>'", status=401, code="unauthorized",
                           headers={"WWW-Authenticate": 'Bearer realm="vision-ai"'})
        # A valid key identifies its consumer (its hash, never the key, is the limiter's identity).
        limiter.check(hashlib.sha256(presented.encode()).hexdigest()[:16] if keys and presented else client,
                      req.path)

    @app.after_request
    def finish_request(response: Response) -> Response:
        req = request._get_current_object()
        rid = g.get("request_id") or request_id(None)
        response.headers[REQUEST_ID_HEADER] = rid
        start = g.get("start")
        duration = time.perf_counter() - start if start is not None else 0.0
        route = req.url_rule.rule if req.url_rule is not None else "unmatched"
        model = g.get("model", "")
        method = req.method
        metrics.requests_by[(metrics.method_label(method), route, model, str(response.status_code))].inc()
        metrics.latency_by[(route,)].observe(duration)
        if method == "POST":
            metrics.request_size_by[(route,)].observe(req.content_length or 0)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra={"fields": {
                "request_id": rid, "method": method, "path": req.path, "route": route,
                "model": model or None, "status": response.status_code,
                "duration_ms": round(duration * 1000, 3), "bytes_in": req.content_length or 0,
                "bytes_out": response.calculate_content_length(), "remote_addr": req.remote_addr,
                "user_agent": req.user_agent.string or None}})
        return response

    @app.teardown_request
    def end_request(_exc):
        if g.pop("in_flight", False):
            metrics.in_flight.dec()


def _install_error_handlers(app: Flask, state: State) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return json_response(exc.body(), exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_ERROR_CODES.get(status, (exc.name or "error").lower().replace(" ", "_"))
        if status == 404:
            message = f"no such endpoint: {request.method} {request.path} (the API is described at /openapi.json)"
        elif status == 405:
            allowed = ", ".join(m for m in getattr(exc, "valid_methods", None) or [] if m not in ("HEAD", "OPTIONS"))
            message = f"{request.method} is not allowed on {request.path}; use {allowed}"
        elif status == 413:
            message = (f"request body is larger than the limit of {state.config.max_body_bytes} bytes "
                       "(VISION_MAX_BODY_BYTES); send a smaller image")
        else:
            message = exc.description or exc.name
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return json_response({"error": {"code": code, "message": message}}, status, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Only genuine bugs get here: every bad-input path raises ApiError. Log the traceback with
        # the request id; tell the client nothing internal.
        rid = g.get("request_id", "")
        log.error("unhandled exception", exc_info=exc, extra={"fields": {"request_id": rid}})
        return json_response({"error": {"code": "internal_error",
                                        "message": f"internal error (request id {rid})"}}, 500)
