"""One request policy (``backend.protection.policy``) whichever layer answers: a request the
Waitress-level guard refuses and one the Flask app refuses are logged with the same access-log fields
and counted under the same metric labels, and every answer's status comes from its error code."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
import requests
from backend_limits import LIMITS_ENV, MAX_BODY
from prom_text import metric

from backend.contract import ERROR_CODES, PROBE_PATHS
from backend.errors import ApiError
from backend.protection import policy
from backend.protection.auth import OPEN_PATHS
from backend.protection.guard import UNSHEDDABLE, Refusal
from backend.protection.ratelimit import EXEMPT_PATHS

KEY = "policy-test-key-0123456789"
# The envelope of every log line (backend.logs), around the access-log fields.
ENVELOPE = {"ts", "level", "logger", "message", "worker"}


@pytest.fixture(scope="module")
def server_env():
    return {**LIMITS_ENV, "VISION_API_KEYS": KEY}


@pytest.fixture(scope="module")
def keyed_app(make_app):
    return make_app(api_keys=(KEY,))


def guard_line(server, request_id: str) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in server.logs().splitlines():
            if line.startswith("{") and f'"{request_id}"' in line:
                entry = json.loads(line)
                if entry.get("logger") == "backend.access":
                    return {k: v for k, v in entry.items() if k not in ENVELOPE}
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for {request_id}")


def app_line(caplog, request_id: str) -> dict:
    (record,) = [r for r in caplog.records if r.name == "backend.access" and r.fields["request_id"] == request_id]
    return json.loads(json.dumps(record.fields))  # as the JSON line has them


def app_count(app, **labels) -> float:
    return app.extensions["vision"].metrics.registry.get_sample_value("vision_http_requests_total", labels) or 0.0


def raw_post(server, path: str, headers: dict[str, str]) -> int:
    """Send only the request head: the guard answers before any body arrives."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(head.encode())
        return int(s.recv(65536).split(b" ", 2)[1])


@pytest.mark.parametrize("case, guard_headers, app_kwargs, status, code, app_model", [
    # no key: the guard answers from the headers; the app, in process, from its own before_request
    ("unauthorized", {"Content-Length": "10", "Content-Type": "application/json"},
     {"data": b'{"base64"}', "content_type": "application/json"}, 401, "unauthorized", ""),
    # a body over VISION_MAX_BODY_BYTES: the guard from its Content-Length, the app from Werkzeug's limit
    # (when the view reads the body, after it has looked the model up: the model label says which)
    ("too large", {"Content-Length": str(MAX_BODY + 1), "Content-Type": "application/json", "X-API-Key": KEY},
     {"data": b"x" * (MAX_BODY + 1), "content_type": "application/json", "headers": {"X-API-Key": KEY}},
     413, "body_too_large", "mnist"),
])
def test_both_layers_log_and_count_a_refusal_alike(server, keyed_app, caplog, case, guard_headers, app_kwargs,
                                                    status, code, app_model):
    route = {"method": "POST", "route": "/predict", "model": "", "status": str(status)}
    before = requests.get(server.metrics_url, timeout=5).text
    rid = f"guard-{case.replace(' ', '-')}"
    assert raw_post(server, "/predict", {**guard_headers, "X-Request-ID": rid}) == status
    guard = guard_line(server, rid)
    after = requests.get(server.metrics_url, timeout=5).text
    assert metric(after, "vision_http_requests_total", **route) - metric(before, "vision_http_requests_total",
                                                                          **route) == 1

    app_route = {**route, "model": app_model}
    app_before = app_count(keyed_app, **app_route)
    app_rid = f"app-{case.replace(' ', '-')}"
    kwargs = {**app_kwargs, "headers": {**app_kwargs.get("headers", {}), "X-Request-ID": app_rid}}
    with caplog.at_level(logging.INFO, logger="backend.access"):
        resp = keyed_app.test_client().post("/predict", **kwargs)
    assert resp.status_code == status and resp.json["error"]["code"] == code
    app = app_line(caplog, app_rid)
    assert app_count(keyed_app, **app_route) - app_before == 1  # the same labels, counted once

    assert guard.keys() == app.keys()
    assert (guard["answered_by"], app["answered_by"]) == (policy.HTTP_LAYER, policy.APP)
    same = ("method", "path", "route", "status", "code")
    assert {k: guard[k] for k in same} == {k: app[k] for k in same} == {
        "method": "POST", "path": "/predict", "route": "/predict", "status": status, "code": code}
    assert (guard["model"], app["model"]) == (None, app_model or None)


def test_a_request_shed_in_the_app_is_counted_like_one_shed_by_the_guard(make_app, caplog):
    """The reason a request was shed travels with its error to the one place that counts it — here an
    explanation that finds the explain budget full inside the app (the guard's own 503s carry the
    same reason, ``overloaded``)."""
    app = make_app(request_deadline=0.05)
    value = app.extensions["vision"].metrics.registry.get_sample_value
    before = value("vision_http_requests_shed_total", {"reason": "overloaded"})
    slot = app.extensions["vision"].explain.running()
    slot.__enter__()  # the one run slot is taken
    try:
        with caplog.at_level(logging.INFO, logger="backend.access"):
            resp = app.test_client().post("/v1/models/mnist/explain", json={"base64": "x"},
                                          headers={"X-Request-ID": "shed-1"})
    finally:
        slot.__exit__(None, None, None)
    assert resp.status_code == 503 and resp.json["error"]["code"] == "overloaded"
    assert value("vision_http_requests_shed_total", {"reason": "overloaded"}) - before == 1
    assert app_line(caplog, "shed-1")["code"] == "overloaded"
    assert Refusal(ApiError("full", code="overloaded", shed="overloaded")).shed == "overloaded"


def test_status_comes_from_the_code_table():
    # the one table from a framework's status to a code agrees with the code → status table
    for status, code in policy.FRAMEWORK_CODES.items():
        assert ERROR_CODES[code] == status, code
    # the guard answers an ApiError with its code's status and the standard reason phrase
    for code, status in ERROR_CODES.items():
        refusal = Refusal(ApiError("m", code=code))
        assert (refusal.code, refusal.error_code) == (status, code)


def test_probe_paths_are_defined_once():
    assert UNSHEDDABLE is PROBE_PATHS and EXEMPT_PATHS is PROBE_PATHS
    assert PROBE_PATHS <= OPEN_PATHS
