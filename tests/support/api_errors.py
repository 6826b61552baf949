"""The API's error contract, asserted the same way on a real HTTP response (``requests``) and on an
in-process one (Flask's test client)."""

from __future__ import annotations

from backend.contract import ERROR_CODES


def json_body(resp) -> dict:
    """The parsed JSON body of either kind of response."""
    return resp.json() if callable(resp.json) else resp.json


def assert_error(resp, status: int, code: str, fragment: str = "") -> dict:
    """``resp`` is the JSON error ``{"error": {"code", "message"}}`` with ``code``, its documented
    ``status``, a message containing ``fragment`` and no traceback; returns the body."""
    text = resp.text
    assert resp.status_code == status, text
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers["Content-Type"]
    body = json_body(resp)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert ERROR_CODES[code] == status
    assert fragment.lower() in body["error"]["message"].lower(), body
    assert "Traceback" not in text
    return body
