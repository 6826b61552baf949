"""Structured logs: one JSON object per line on stdout, which is what container log pipelines parse.

Extra structured fields travel in ``extra={"fields": {...}}`` so they appear as top-level keys
instead of being formatted into the message text.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import time

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and harmless in logs and headers (no CR/LF injection).
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# Longest value of a client-chosen log field (path, user agent): one request, one bounded line.
FIELD_CHARS = 512


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict | None = None):
        super().__init__()
        self.static = static or {}  # fields on every line (the worker number with VISION_WORKERS > 1)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str | int = "INFO", stream=None, worker: int | None = None) -> None:
    """Route every logger (ours, Waitress's) through one JSON handler on stdout."""
    global _access_path
    static = {"worker": worker} if worker else None
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The access log's constant keys, encoded once, in JsonFormatter's order and spacing.
    head = json.dumps({"level": "INFO", "logger": ACCESS.name, "message": "request", **(static or {})},
                      ensure_ascii=False)[1:-1]
    _access_path = (handler, head)


ACCESS = logging.getLogger("backend.access")
_access_path: tuple[logging.StreamHandler, str] | None = None  # set by configure_logging


def log_access(fields: dict) -> None:
    """One access-log line: exactly what ``ACCESS.info("request", extra={"fields": fields})`` writes
    through JsonFormatter, without its per-line overhead (no LogRecord, no caller lookup, the constant
    keys encoded once) — the line every request pays for. Falls back to ``logging`` whenever the
    configuration is not configure_logging's own (a test's capture handler, filters, another level)."""
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    fast = _access_path
    root = logging.getLogger()
    if (fast is None or root.handlers != [fast[0]] or ACCESS.handlers or ACCESS.filters or not ACCESS.propagate
            or fast[0].filters or root.filters or not fields):
        ACCESS.info("request", extra={"fields": fields})
        return
    handler, head = fast
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int((now - int(now)) * 1000):03d}Z"
    line = f'{{"ts": "{ts}", {head}, {json.dumps(fields, default=str, ensure_ascii=False)[1:]}\n'
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.flush()
    except Exception:  # as logging does: a broken stdout must not fail the request
        handler.handleError(ACCESS.makeRecord(ACCESS.name, logging.INFO, __file__, 0, "request", (), None))
    finally:
        handler.release()


# Generated ids: a random per-process prefix plus a counter — unique across replicas and restarts
# without a urandom() syscall per request (a syscall is a point where a thread can lose the GIL).
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)  # next() is atomic under the GIL


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is safe to echo, else a fresh unique id (32 hex chars)."""
    if incoming and len(incoming) <= 128 and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return f"{_PREFIX}{next(_COUNTER):016x}"


def cap(value: str | None, limit: int = FIELD_CHARS) -> str | None:
    """A client-chosen string as a log field: at most ``limit`` characters, marked when cut."""
    if value is None or len(value) <= limit:
        return value
    return f"{value[:limit]}…[{len(value) - limit} more]"
