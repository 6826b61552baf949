"""Flask application factory: wires config, model registry, auth, JSON errors, metrics and logs.

The routes live in the blueprints (``backend.web.api``, ``docs``, ``explain``, ``v2``), which this module
imports and registers; they reach the per-app state through ``backend.web.state``, never through this
module, so imports point one way: factory → blueprints → the modules below.

This module owns the cross-cutting request lifecycle so every response — including Flask's own
404/405/413 and genuine bugs — gets the same JSON error shape, an ``X-Request-ID``, one access-log
line and its metrics; what is decided and recorded is the request policy the Waitress-level guard
applies too (``backend.protection.policy``).
"""

from __future__ import annotations

import hashlib
import logging
import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from backend.config import Config
from backend.contract import INTERNAL_ERROR
from backend.errors import ApiError
from backend.logs import REQUEST_ID_HEADER, request_id
from backend.metrics import Metrics
from backend.model.inference import Registry
from backend.protection import policy
from backend.protection.admission import ExplainBudget, SpoolBudget
from backend.protection.auth import presented_key
from backend.protection.budget import MemoryBudget
from backend.protection.ratelimit import RateLimiter
from backend.releases.manager import Releases, layout_for
from backend.serving.pipeline import Pipeline
from backend.web import api, docs, explain, v2
from backend.web.bodies import InMemoryUploads
from backend.web.responses import json_response
from backend.web.state import EXTENSION, State

log = logging.getLogger("backend.app")


def create_app(config: Config | None = None, registry: Registry | None = None) -> Flask:
    """Build the app. Models are *not* loaded here: call ``State.load_models()`` (``backend.runtime.server`` does,
    in the background, so ``/healthz`` answers and ``/readyz`` says 503 while they load)."""
    config = config or Config.from_env()
    registry = registry or Registry(config.model_dir, config.models, batching=config.batching)
    metrics = Metrics()
    memory = MemoryBudget(config.decode_memory_mb * 2**20, config.decode_wait)
    limiter = RateLimiter(config.rate_limit, config.auth_fail_limit, config.rate_limit_storage,
                          config.trusted_proxies)
    releases = Releases(layout_for(config), registry, metrics, poll=config.release_poll)
    state = State(config=config, registry=registry, metrics=metrics, memory=memory, limiter=limiter,
                  releases=releases, spool=SpoolBudget(config.spool_mb * 2**20),
                  explain=ExplainBudget(config.explain_concurrency, config.explain_queue, config.explain_cpu_share,
                                        wait=config.request_deadline),
                  pipeline=Pipeline(registry, releases, metrics, memory, config))
    metrics.track(metrics.ready, lambda: 1.0 if state.ready else 0.0)

    app = Flask(__name__)
    app.request_class = InMemoryUploads
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    # A multipart upload is one file and a flag: bound the parts and the text fields werkzeug parses.
    app.config["MAX_FORM_PARTS"] = 16
    app.config["MAX_FORM_MEMORY_SIZE"] = 64 * 1024
    app.extensions[EXTENSION] = state
    for blueprint in (api.bp, docs.bp, v2.bp, explain.bp):
        app.register_blueprint(blueprint)
    _install_lifecycle(app, state)
    _install_error_handlers(app, state)
    return app


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
        refused = policy.authenticate(keys, req.path, presented, limiter, lambda: client)
        if refused is not None:
            raise refused
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
        error = g.get("error")  # (code, shed) of an error answer
        policy.record(metrics, request_id=rid, method=req.method, path=req.path,
                      route=req.url_rule.rule if req.url_rule is not None else "unmatched",
                      model=g.get("model", ""), status=response.status_code,
                      code=error[0] if error else None, shed=error[1] if error else None, duration=duration,
                      bytes_in=req.content_length or 0, bytes_out=response.calculate_content_length(),
                      remote_addr=req.remote_addr, user_agent=req.headers.get("User-Agent"),
                      answered_by=policy.APP)
        return response

    @app.teardown_request
    def end_request(_exc):
        if g.pop("in_flight", False):
            metrics.in_flight.dec()


def _install_error_handlers(app: Flask, state: State) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        g.error = (exc.code, exc.shed)
        return json_response(exc.body(), exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        code = policy.framework_code(status, (exc.name or "error").lower().replace(" ", "_"))
        g.error = (code, None)
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
        g.error = (INTERNAL_ERROR, None)
        return json_response({"error": {"code": INTERNAL_ERROR,
                                        "message": f"internal error (request id {rid})"}}, 500)
