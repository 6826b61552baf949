"""Admission from the headers (backend.protection.admission, backend.protection.guard) against a real
backend on Waitress: body limits before the body is read, the spool budget, chunk bounds, the explain budget — and the
inputs that used to be 500s. Raw sockets, so no client library hides what the server answers."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
from repo import SAMPLES
from test_guard import raw

from backend.protection.admission import ExplainBudget, SpoolBudget

MAX_BODY = 2 * 2**20
SPOOL = 2 * 2**20  # VISION_SPOOL_MB; Waitress spools bodies over 512 KiB
PNG = (SAMPLES / "mnist" / "7-7.png").read_bytes()
B64_BODY = json.dumps({"base64": base64.b64encode(PNG).decode()}).encode()


@pytest.fixture(scope="module")
def server_env():
    return {"VISION_MAX_BODY_BYTES": str(MAX_BODY), "VISION_SPOOL_MB": "2", "VISION_EXPLAIN_CPU_SHARE": "0.01"}


def post(path: str, body: bytes, headers: str = "", length: int | None = None) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n").encode() + body


def chunked(path: str, body: bytes, size: int) -> bytes:
    parts = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + parts + b"0\r\n\r\n"


def test_a_content_length_over_the_limit_is_refused_before_the_body(server):
    start = time.monotonic()
    status, _, body = raw(server, post("/predict", b"", length=MAX_BODY + 1))  # no body sent at all
    assert status == 413 and body["error"]["code"] == "body_too_large", body
    assert "VISION_MAX_BODY_BYTES" in body["error"]["message"]
    assert time.monotonic() - start < 2  # answered from the headers, not at the read timeout


def test_bodies_past_the_spool_budget_get_a_json_503_and_the_budget_comes_back(server):
    held = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:  # 1.6 MB reserved from the 2 MiB budget, its last bytes held back
        held.sendall(post("/predict", b"\0" * 800_000, "Content-Type: image/png\r\n", length=1_600_000))
        time.sleep(0.2)
        status, headers, body = raw(server, post("/predict", b"\0" * 600_000, "Content-Type: image/png\r\n"))
        assert status == 503 and body["error"]["code"] == "overloaded", body
        assert "VISION_SPOOL_MB" in body["error"]["message"] and int(headers["retry-after"]) >= 1
        small, _, _ = raw(server, post("/predict", B64_BODY, "Content-Type: application/json\r\n"))
        assert small == 200  # bodies kept in memory do not need the spool
    finally:
        held.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the closed connection's reservation is released
        status, _, body = raw(server, post("/predict", b"\0" * 600_000, "Content-Type: image/png\r\n"))
        if status != 503:
            break
        time.sleep(0.1)
    assert status == 422, body  # spooled, read and refused as "not an image"


def test_tiny_chunks_are_refused_after_a_few_and_normal_chunks_work(server):
    body = b'{"base64":"' + b"A" * 200_000 + b'"}'
    start = time.monotonic()
    status, _, answer = raw(server, chunked("/predict", body, 1))
    assert status == 400 and "chunk" in answer["error"]["message"], answer
    assert time.monotonic() - start < 2
    status, _, answer = raw(server, chunked("/predict", B64_BODY, 100))  # small, but few chunks
    assert status == 200, answer
    status, _, answer = raw(server, chunked("/predict", B64_BODY, 8192))
    assert status == 200 and answer["label"] == "7", answer


def test_chunked_bodies_meet_the_body_limit_and_header_bounds(server):
    status, _, answer = raw(server, chunked("/predict", b"A" * (MAX_BODY + 100_000), 65536), timeout=30)
    assert status == 413 and answer["error"]["code"] == "body_too_large", answer
    overlong = (b"POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"0" * 5000)
    status, _, answer = raw(server, overlong)
    assert status == 400 and "chunk header" in answer["error"]["message"], answer


def test_explanations_beyond_their_cpu_budget_get_503_while_predictions_go_on(server):
    request = post("/v1/models/mnist/explain", B64_BODY, "Content-Type: application/json\r\n")
    for _ in range(200):  # 1 CPU-s of burst at 1 % of a CPU: a few dozen explanations
        status, headers, body = raw(server, request)
        if status != 200:
            break
    assert status == 503 and body["error"]["code"] == "overloaded", body
    assert "VISION_EXPLAIN" in body["error"]["message"] and int(headers["retry-after"]) >= 1
    status, _, _ = raw(server, post("/predict", B64_BODY, "Content-Type: application/json\r\n"))
    assert status == 200


def test_inputs_that_used_to_be_500s_are_400s(server):
    long_int = "[" + "9" * 400 + "," + ",".join(["0"] * 783) + "]"
    v2 = ('{"inputs":[{"name":"input","datatype":"FP32","shape":[1,1,28,28],"data":' + long_int + "}]}").encode()
    status, _, body = raw(server, post("/v2/models/mnist/infer", v2, "Content-Type: application/json\r\n"))
    assert status == 400 and "numbers" in body["error"], body
    for value in (b"\xb2", b"\xd9\xa3", b"9" * 5000):  # "²", "٣" (isdigit() but not ASCII), a huge number
        request = (b"POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   b"Inference-Header-Content-Length: " + value + b"\r\nContent-Length: 2\r\n\r\n{}")
        status, _, body = raw(server, request)
        assert status == 400 and "Inference-Header-Content-Length" in body["error"], body
    status, _, body = raw(server, post("/v2/models/mnist/infer", b"[" * 10 + b"[]," * 100_000 + b"]",
                                       "Content-Type: application/json\r\n"))
    assert status == 400 and "far more objects" in body["error"], body


def test_a_raw_image_on_v2_infer_is_one_bytes_element(server):
    status, _, body = raw(server, post("/v2/models/mnist/infer", PNG, "Content-Type: application/octet-stream\r\n"))
    assert status == 200 and body["outputs"][0]["shape"] == [1, 10], body


def test_request_ids_and_log_fields_are_bounded(server):
    status, headers, _ = raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-ID: "
                             + b"r" * 10_000 + b"\r\nUser-Agent: " + b"u" * 200_000 + b"\r\n\r\n")
    assert status == 200 and len(headers["x-request-id"]) == 32  # replaced by a generated id
    status, headers, _ = raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"X-Request-ID: trace-42\r\n\r\n")
    assert headers["x-request-id"] == "trace-42"
    time.sleep(0.2)
    lines = [line for line in server.logs().splitlines() if '"path": "/healthz"' in line]
    assert lines and max(len(line) for line in lines) < 2048


# -- the budgets themselves ---------------------------------------------------------------------

def test_explain_budget_counts_slots_and_cpu():
    budget = ExplainBudget(running=1, queued=1, cpu_share=1.0, wait=0.1, burst_seconds=0.05)
    assert budget.admit() is None and budget.admit() is None
    assert budget.admit() == 1.0  # both slots taken: retry in a second
    budget.leave()
    assert budget.admit() is None
    with budget.running():
        time.sleep(0.1)  # 0.1 s charged against 0.05 s of burst
    budget.leave()
    budget.leave()
    retry = budget.admit()
    assert retry is not None and 0 < retry <= 0.06  # the deficit, at one CPU-second per second


def test_explain_budget_run_slot_wait_is_bounded():
    budget = ExplainBudget(running=1, queued=0, cpu_share=1.0, wait=0.05)
    with budget.running():
        start = time.monotonic()
        with pytest.raises(Exception) as info, budget.running():
            pass
        assert info.value.status == 503 and "Retry-After" in info.value.headers
        assert time.monotonic() - start < 1


def test_spool_budget():
    spool = SpoolBudget(SPOOL)
    assert spool.reserve(SPOOL - 1) and not spool.reserve(2)
    spool.release(SPOOL - 1)
    assert spool.reserve(SPOOL)
