"""One request policy for both layers that answer requests: the Waitress-level guard
(``backend.protection.guard``, which refuses before Flask sees a request) and the Flask app
(``backend.web.app``). Whichever layer answers, it decides and accounts alike:

* **who may call** — :func:`authenticate`: the API key, and the auth-failure limit behind it;
* **the code of a framework's own error** — :func:`framework_code`, for what Werkzeug or Waitress
  raise by status; the status of every other answer comes from its error code
  (``backend.contract.ERROR_CODES``);
* **one access-log line and one set of metrics per answer** — :func:`record`, with the same fields
  and labels from both layers (``answered_by`` says which).

The probe paths are ``backend.contract.PROBE_PATHS``: open, never rate-limited, never shed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from backend.contract import (
    BODY_TOO_LARGE,
    HEADERS_TOO_LARGE,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    REQUEST_TIMEOUT,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
)
from backend.errors import ApiError
from backend.logs import cap, log_access
from backend.protection.auth import is_open, key_is_valid
from backend.protection.ratelimit import RateLimiter

access_log = logging.getLogger("backend.access")

# The code of an error the framework raised itself (Werkzeug's HTTPException in Flask, the parser's
# errors in Waitress), by its status: the only place a status leads to a code, not the reverse.
FRAMEWORK_CODES = {400: INVALID_REQUEST, 401: UNAUTHORIZED, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED,
                   408: REQUEST_TIMEOUT, 413: BODY_TOO_LARGE, 415: UNSUPPORTED_MEDIA_TYPE, 431: HEADERS_TOO_LARGE,
                   501: NOT_IMPLEMENTED}

# Who answered: the app, or the guard before the request reached it.
APP, HTTP_LAYER = "app", "http-layer"


def framework_code(status: int, default: str = INVALID_REQUEST) -> str:
    return FRAMEWORK_CODES.get(status, default)


def authenticate(keys: tuple[bytes, ...], path: str, presented: str | None, limiter: RateLimiter,
                 client: Callable[[], str]) -> ApiError | None:
    """None when the request may go on; else what to answer: 401, or 429 once ``client()`` has sent
    too many requests without a valid key (``VISION_AUTH_FAIL_LIMIT``)."""
    if not keys or is_open(path) or key_is_valid(presented, keys):
        return None
    try:
        limiter.check(client(), path, auth_failed=True)
    except ApiError as exc:
        return exc
    return ApiError("missing or invalid API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
                    code=UNAUTHORIZED, headers={"WWW-Authenticate": 'Bearer realm="vision-ai"'})


def record(metrics, *, request_id: str, method: str, path: str, route: str, model: str, status: int,
           code: str | None, shed: str | None, duration: float, bytes_in: int, bytes_out: int | None,
           remote_addr: str | None, user_agent: str | None, answered_by: str) -> None:
    """Metrics and the access-log line of one answer. ``route`` is the route template (a closed set,
    safe as a label), ``model`` a served model's name or ""; ``code`` the error code of an error
    answer; ``shed`` the reason when the request was refused to protect the server."""
    metrics.requests_by[(metrics.method_label(method), route, model, str(status))].inc()
    metrics.latency_by[(route,)].observe(duration)
    if method == "POST":
        metrics.request_size_by[(route,)].observe(bytes_in)
    if shed is not None:
        metrics.shed.labels(shed).inc()
    if access_log.isEnabledFor(logging.INFO):
        log_access({
            "request_id": request_id, "method": cap(method, 16), "path": cap(path), "route": route,
            "model": model or None, "status": status, "code": code, "duration_ms": round(duration * 1000, 3),
            "bytes_in": bytes_in, "bytes_out": bytes_out, "remote_addr": remote_addr,
            "user_agent": cap(user_agent) or None, "answered_by": answered_by})
