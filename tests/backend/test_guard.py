"""The HTTP-layer guard against a real backend on Waitress: raw sockets, so nothing is hidden by a
client library (slow senders, half-sent bodies, made-up methods, oversized headers)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image
from repo import SAMPLES

from devkit.backend_server import BackendServer

KEY = "k" * 32
PNG = (SAMPLES / "mnist" / "7-7.png").read_bytes()


def raw(server: BackendServer, data: bytes, timeout: float = 5.0) -> tuple[int, dict, dict | None]:
    """Send ``data`` as-is, read the whole answer; → (status, headers, JSON body or None)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)  # no half-close: the server reads a closed read side as "client gone"
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return parse(b"".join(chunks))


def _json_post(body: bytes) -> bytes:
    """A complete ``POST /predict`` of the JSON ``body`` on a connection the server then closes."""
    return (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def parse(response: bytes) -> tuple[int, dict, dict | None]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    try:
        payload = json.loads(body) if headers.get("content-type", "").startswith("application/json") else None
    except ValueError:
        payload = None
    return status, headers, payload


def read_response(s: socket.socket) -> bytes:
    """One HTTP response from ``s``: headers, then Content-Length bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(parse(head + b"\r\n\r\n")[1].get("content-length", 0))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def metrics(server: BackendServer) -> str:
    return server.metrics()


@pytest.fixture(scope="module")
def server_env():
    return {"VISION_READ_TIMEOUT": "1", "VISION_IDLE_TIMEOUT": "2"}


@pytest.fixture(scope="module")
def keyed():
    with BackendServer(env={"VISION_API_KEYS": KEY}) as srv:
        yield srv


@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "invalid_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n",
     413, "body_too_large"),
])
def test_http_layer_rejections_are_json_logged_and_counted(server, request_bytes, status, code):
    got, headers, body = raw(server, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "x-request-id" in headers
    assert f'status="{status}"' in metrics(server)
    time.sleep(0.1)
    assert f'"status": {status}' in server.logs() or f'"status":{status}' in server.logs()


def test_a_huge_integer_in_json_is_a_400_not_a_500(server):
    body = b'{"base64": ' + b"9" * 5000 + b"}"
    req = _json_post(body)
    status, _, payload = raw(server, req)
    assert status == 400 and payload["error"]["code"] == "invalid_json"


def test_made_up_methods_share_one_metrics_label(server):
    for i in range(20):
        raw(server, f"FOO{i} /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    text = metrics(server)
    assert 'method="other"' in text
    assert not any(f'method="FOO{i}"' in text for i in range(20))


def test_a_trickling_sender_is_cut_off_with_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        start = time.monotonic()
        data = b""
        try:
            for _ in range(20):  # a byte every 0.3 s keeps the connection "active", never complete
                s.sendall(b"{")
                time.sleep(0.3)
                s.setblocking(False)
                try:
                    data += s.recv(65536)
                except BlockingIOError:
                    pass
                s.setblocking(True)
                if data:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert data, "the server never answered the trickling sender"
    status, _, body = parse(data)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert time.monotonic() - start < 4.0


def test_stalled_sockets_do_not_lock_out_probes(server):
    stalled = []
    try:
        for _ in range(600):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            stalled.append(s)
        for path in ("/healthz", "/readyz"):
            start = time.monotonic()
            assert urllib.request.urlopen(f"{server.url}{path}", timeout=5).status == 200
            assert time.monotonic() - start < 1.0
    finally:
        for s in stalled:
            s.close()


def test_without_a_key_the_body_is_never_read(keyed):
    """A 401 arrives while the client is still sending a 15 MiB body: it was refused from the headers."""
    with socket.create_connection(("127.0.0.1", keyed.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 15728640\r\n\r\n" + b"A" * 65536)
        status, headers, body = parse(read_response(s))
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert headers["www-authenticate"].startswith("Bearer")


def test_with_a_key_predictions_still_work(keyed):
    payload = json.dumps({"base64": base64.b64encode(PNG).decode()}).encode()
    req = urllib.request.Request(f"{keyed.url}/predict", data=payload,
                                 headers={"Content-Type": "application/json", "X-API-Key": KEY})
    assert json.loads(urllib.request.urlopen(req, timeout=10).read())["label"] == "7"
    assert urllib.request.urlopen(f"{keyed.url}/healthz", timeout=5).status == 200


def test_overload_is_shed_with_503_and_retry_after():
    """One thread, a queue of one: a burst gets some 503s at once — never a hang — and probes pass."""
    body = json.dumps({"base64": base64.b64encode(PNG).decode()}).encode()
    req = _json_post(body)
    with BackendServer(env={"VISION_THREADS": "1", "VISION_MAX_QUEUE": "1", "VISION_BATCHING": "0"}) as srv:
        results: list[tuple[int, dict, dict | None]] = []

        def client():
            for _ in range(10):
                results.append(raw(srv, req))

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = [r[0] for r in results]
        assert len(statuses) == 160 and set(statuses) <= {200, 503}
        shed = [r for r in results if r[0] == 503]
        assert shed, "no request was shed"
        assert all(r[1]["retry-after"] == "1" and r[2]["error"]["code"] == "overloaded" for r in shed)
        assert 200 in statuses
        assert 'vision_http_requests_shed_total{reason="overloaded"}' in metrics(srv)


def test_a_body_of_millions_of_empty_objects_is_refused_before_parsing(server):
    body = b'{"instances":[' + b"{}," * 3_000_000 + b"{}]}"
    status, _, payload = raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
                             timeout=30)
    assert status == 400 and payload["error"]["code"] == "invalid_json"


def test_key_guessing_is_rate_limited_with_429_and_retry_after():
    with BackendServer(env={"VISION_API_KEYS": KEY, "VISION_AUTH_FAIL_LIMIT": "5/minute"}) as srv:
        statuses, answers = [], []
        for i in range(8):
            status, headers, body = raw(srv, f"POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: guess{i:012d}\r\n"
                                             "Content-Length: 2\r\nConnection: close\r\n\r\n{}".encode())
            statuses.append(status)
            answers.append((headers, body))
        assert statuses == [401] * 5 + [429] * 3
        headers, body = answers[-1]
        assert body["error"]["code"] == "rate_limited" and int(headers["retry-after"]) >= 1
        assert 'vision_http_requests_shed_total{reason="rate_limited"} 3.0' in metrics(srv)


def test_per_client_rate_limit_trusts_forwarded_for_only_from_trusted_proxies():
    payload = json.dumps({"base64": base64.b64encode(PNG).decode()}).encode()
    with BackendServer(env={"VISION_RATE_LIMIT": "3/minute", "VISION_TRUSTED_PROXIES": "127.0.0.1/32"}) as srv:
        def predict(client: str) -> int:
            req = urllib.request.Request(f"{srv.url}/predict", data=payload, headers={
                "Content-Type": "application/json", "X-Forwarded-For": f"203.0.113.9, {client}"})
            try:
                return urllib.request.urlopen(req, timeout=10).status
            except urllib.error.HTTPError as exc:
                assert exc.headers["Retry-After"] and json.loads(exc.read())["error"]["code"] == "rate_limited"
                return exc.code
        assert [predict("198.51.100.1") for _ in range(4)] == [200, 200, 200, 429]
        assert predict("198.51.100.2") == 200  # another client behind the same proxy has its own budget
        assert urllib.request.urlopen(f"{srv.url}/healthz", timeout=5).status == 200  # probes never limited


def _batch_request(count: int, side: int) -> bytes:
    import io as _io

    from PIL import Image as _Image

    buf = _io.BytesIO()
    _Image.effect_noise((side, side), 60).convert("L").save(buf, "PNG")
    item = {"base64": base64.b64encode(buf.getvalue()).decode()}
    body = json.dumps({"instances": [item] * count}).encode()
    return _json_post(body)


def test_a_batch_stops_at_its_deadline_and_when_the_client_leaves():
    with BackendServer(env={"VISION_REQUEST_DEADLINE": "0.05", "VISION_LOG_LEVEL": "INFO"}) as srv:
        status, headers, body = raw(srv, _batch_request(30, 256), timeout=30)
        assert status == 503 and body["error"]["code"] == "deadline_exceeded" and headers["retry-after"] == "1"
    with BackendServer(env={"VISION_REQUEST_DEADLINE": "60"}) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(_batch_request(50, 320))
            time.sleep(0.05)  # the batch is being decoded; hang up
        deadline = time.monotonic() + 20
        while '"status": 499' not in srv.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert '"status": 499' in srv.logs(), "the server went on with a batch nobody waited for"


def test_probes_are_answered_while_every_worker_thread_is_busy():
    """One worker thread, three 16-megapixel 16-bit PNGs ahead (each a good fraction of a CPU-second):
    /healthz and /readyz sent after them are answered before the two queued behind the busy thread."""
    buf = io.BytesIO()
    Image.new("I;16", (4000, 4000), 1000).save(buf, "PNG", compress_level=9)
    body = json.dumps({"base64": base64.b64encode(buf.getvalue()).decode()}).encode()
    heavy = _json_post(body)
    with BackendServer(env={"VISION_THREADS": "1", "VISION_BATCHING": "0"}) as srv:
        done: list[tuple[str, float, int]] = []

        def send(name: str, data: bytes) -> None:
            status = raw(srv, data, timeout=60)[0]
            done.append((name, time.monotonic(), status))

        uploads = [threading.Thread(target=send, args=("predict", heavy)) for _ in range(3)]
        for t in uploads:
            t.start()
        time.sleep(0.3)  # the uploads are read and the one thread is decoding
        probes = [threading.Thread(target=send, args=(path, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                                                            "Connection: close\r\n\r\n".encode()))
                  for path in ("/healthz", "/readyz")]
        for t in probes:
            t.start()
        for t in probes + uploads:
            t.join(60)
        order = [name for name, _, _ in sorted(done, key=lambda d: d[1])]
        # The upload being decoded may finish first (on a loaded machine the probes leave late);
        # the two queued behind it must not: probes never wait for the queue.
        assert sorted(order[:3])[:2] == ["/healthz", "/readyz"] and order[3:] == ["predict"] * 2, order
        assert all(status == 200 for _, _, status in done), done
