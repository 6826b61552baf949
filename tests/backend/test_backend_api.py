"""The HTTP API: routes, body parsing and the JSON error matrix in-process (Flask's test client on the
app factory with the real ONNX models), and what needs the real server — Waitress's limits, chunked
bodies, stdout access logs, metrics over HTTP, API keys at the HTTP layer — over loopback HTTP
against ``python -m backend``.

Predictions are checked against an independent computation (ONNX Runtime called directly on the
preprocessed input), and every error path against the status/code matrix of the contract.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import struct
import zlib

import numpy as np
import onnxruntime as ort
import pytest
import requests
from api_errors import assert_error
from backend_limits import LIMITS_ENV, MAX_BATCH, MAX_BODY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from prom_text import metric
from repo import SAMPLES

from backend.model.decoding import open_image
from backend.model.preprocessing import preprocess
from backend.protection.auth import key_is_valid
from devkit.backend_server import BackendServer, test_model_dir

KEYS = ("k" * 20, "another-valid-key-123")


@pytest.fixture(scope="module")
def server_env():
    return {**LIMITS_ENV, "VISION_THREADS": "4"}


@pytest.fixture(scope="module")
def http():
    with requests.Session() as s:
        yield s


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def sample(dataset: str, index: int) -> bytes:
    return next((SAMPLES / dataset).glob(f"{index}-*.png")).read_bytes()


def card(name: str) -> dict:
    return json.loads((test_model_dir() / f"{name}.json").read_text())


_sessions: dict[str, ort.InferenceSession] = {}


def expected_probabilities(name: str, data: bytes) -> np.ndarray:
    """Independent reference: model card normalisation + a fresh ORT session + softmax."""
    c = card(name)
    if name not in _sessions:
        _sessions[name] = ort.InferenceSession(str(test_model_dir() / f"{name}.onnx"),
                                               providers=["CPUExecutionProvider"])
    x = preprocess(open_image(data, 10**8), c["input"]["preprocessing"])
    x = ((x - c["normalization"]["mean"]) / c["normalization"]["std"]).astype(np.float32)[None, None]
    logp = _sessions[name].run(None, {"input": x})[0][0].astype(np.float64)
    return np.exp(logp) / np.exp(logp).sum()


def post(http, url, body, **kw):
    """POST a JSON body (or raw bytes/str) with ``http`` — a requests session and a URL, or Flask's
    test client and a path: both take the same arguments."""
    return http.post(url, data=body if isinstance(body, (bytes, str)) else json.dumps(body),
                     headers={"Content-Type": "application/json", **kw.pop("headers", {})}, **kw)


# --- predictions --------------------------------------------------------------------------------

def test_predict_matches_independent_onnx_computation(client):
    for i in range(10):
        data = sample("mnist", i)
        resp = post(client, "/predict", {"base64": b64(data)})
        assert resp.status_code == 200, resp.text
        body = resp.json
        expected = expected_probabilities("mnist", data)
        assert body["model"] == "mnist" and body["model_version"] == card("mnist")["version"]
        assert len(body["probabilities"]) == 10
        assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
        assert body["class_index"] == int(np.argmax(expected))
        assert body["label"] == card("mnist")["labels"][body["class_index"]]
        assert body["confidence"] == max(body["probabilities"])


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_samples_are_classified_correctly(client, dataset):
    """The shipped samples (real dataset images) must come out right with the real models."""
    labels = card(dataset)["labels"]
    for i in range(10):
        resp = post(client, f"/v1/models/{dataset}/predict", {"base64": b64(sample(dataset, i))})
        assert resp.status_code == 200
        assert (resp.json["class_index"], resp.json["label"]) == (i, labels[i])


def test_base64_dialects_give_the_same_answer(client):
    data = sample("mnist", 3)
    plain = b64(data)
    variants = [f"data:image/png;base64,{plain}", "\n".join(plain[i:i + 76] for i in range(0, len(plain), 76)),
                base64.urlsafe_b64encode(data).decode().rstrip("=")]
    reference = post(client, "/predict", {"base64": plain}).json
    for text in variants:
        assert post(client, "/predict", {"base64": text}).json == reference


def test_return_input_is_the_model_input(client):
    data = sample("fashion-mnist", 7)
    resp = post(client, "/v1/models/fashion-mnist/predict", {"base64": b64(data), "return_input": True})
    assert resp.status_code == 200
    img = Image.open(io.BytesIO(base64.b64decode(resp.json["input_image"])))
    assert (img.format, img.mode, img.size) == ("PNG", "L", (28, 28))
    expected = np.rint(preprocess(open_image(data, 10**8), "frame") * 255)
    np.testing.assert_array_equal(np.asarray(img), expected)
    assert "input_image" not in post(client, "/predict", {"base64": b64(data)}).json


def test_batch_keeps_order_and_matches_single_predictions(client):
    images = [sample("fashion-mnist", i) for i in (9, 0, 5, 1)]
    resp = post(client, "/v1/models/fashion-mnist/predict",
                {"instances": [{"base64": b64(d)} for d in images], "return_input": True})
    assert resp.status_code == 200
    body = resp.json
    assert set(body) == {"model", "model_version", "predictions"}
    assert len(body["predictions"]) == 4
    for data, pred in zip(images, body["predictions"], strict=True):
        single = post(client, "/v1/models/fashion-mnist/predict", {"base64": b64(data)}).json
        np.testing.assert_allclose(pred["probabilities"], single["probabilities"], atol=1e-6)
        assert pred["label"] == single["label"] and "input_image" in pred
    # /predict is the mnist model and takes batches too
    resp = post(client, "/predict", {"instances": [{"base64": b64(sample("mnist", 4))}] * MAX_BATCH})
    assert resp.status_code == 200 and len(resp.json["predictions"]) == MAX_BATCH


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


REAL_WORLD = {
    "rgba-canvas": lambda: _canvas("RGBA"),
    "la": lambda: _canvas("RGBA").convert("LA"),
    "palette-transparency": lambda: _canvas("RGB").convert("P"),
    "1-bit": lambda: _canvas("RGB").convert("1"),
    "cmyk-jpeg": lambda: _canvas("RGB").convert("CMYK"),
    "16-bit": lambda: Image.fromarray(np.asarray(_canvas("RGB").convert("L"), np.uint16) * 257),
    "1x1": lambda: Image.new("RGB", (1, 1), "white"),
    "thin-strip": lambda: Image.new("L", (3000, 2), 255),
    "blank-white": lambda: Image.new("RGB", (64, 64), "white"),
    "blank-transparent": lambda: Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
    "photo-size": lambda: _canvas("RGB").resize((1000, 800)),
}


def _canvas(mode: str) -> Image.Image:
    """Dark stroke on a white/transparent background, like a browser canvas or a scan."""
    img = Image.new("RGBA", (200, 200), (255, 255, 255, 0))
    from PIL import ImageDraw

    ImageDraw.Draw(img).line([(60, 40), (140, 40), (90, 170)], fill=(20, 20, 20, 255), width=14)
    return img if mode == "RGBA" else img.convert(mode)


def _real_world_cases() -> list[tuple[str, str]]:
    """Every (image kind, format) pair Pillow can write (e.g. no RGBA JPEG): ~50 small images."""
    cases = []
    for kind in sorted(REAL_WORLD):
        for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"):
            try:
                encode(REAL_WORLD[kind](), fmt)
            except (OSError, ValueError, KeyError):
                continue
            cases.append((kind, fmt))
    return cases


@pytest.mark.parametrize("kind, fmt", _real_world_cases())
def test_real_world_images_never_fail(client, kind, fmt):
    data = encode(REAL_WORLD[kind](), fmt)
    for model in ("mnist", "fashion-mnist"):
        resp = post(client, f"/v1/models/{model}/predict", {"base64": b64(data)})
        assert resp.status_code == 200, resp.text
        assert sum(resp.json["probabilities"]) == pytest.approx(1.0)


# --- the error matrix ------------------------------------------------------------------------------

PNG = sample("mnist", 1)
ERROR_CASES = [
    # (id, method, path, body, content-type, status, code, message fragment)
    # the literal unquoted form is accepted; this value is just a PNG signature, not a whole image
    ("unquoted-base64", "POST", "/predict", b'{"base64": iVBORw0KGgo}', "application/json", 422,
     "unsupported_image", ""),
    ("trailing-comma", "POST", "/predict", b'{"base64": "abc",}', "application/json", 400, "invalid_json", "line 1"),
    ("empty-body", "POST", "/predict", b"", "application/json", 400, "invalid_json", "empty"),
    ("not-utf8", "POST", "/predict", b'{"base64": "\xff\xfe"}', "application/json", 400, "invalid_json", ""),
    ("deep-nesting", "POST", "/predict", b"[" * 100_000, "application/json", 400, "invalid_json", ""),
    ("array-body", "POST", "/predict", b"[1, 2]", "application/json", 400, "invalid_request", "object"),
    ("string-body", "POST", "/predict", b'"iVBOR"', "application/json", 400, "invalid_request", "object"),
    ("missing-field", "POST", "/predict", b'{"image": "abc"}', "application/json", 400, "invalid_request", "base64"),
    ("number-field", "POST", "/predict", b'{"base64": 42}', "application/json", 400, "invalid_request", "string"),
    ("null-field", "POST", "/predict", b'{"base64": null}', "application/json", 400, "invalid_request", "null"),
    ("bad-return-input", "POST", "/predict", json.dumps({"base64": b64(PNG), "return_input": "yes"}).encode(),
     "application/json", 400, "invalid_request", "return_input"),
    ("instances-not-list", "POST", "/predict", b'{"instances": {"base64": "x"}}', "application/json", 400,
     "invalid_request", "array"),
    ("instances-empty", "POST", "/predict", b'{"instances": []}', "application/json", 400, "invalid_request", "empty"),
    ("instance-not-object", "POST", "/predict", b'{"instances": ["abc"]}', "application/json", 400,
     "invalid_request", "instances[0]"),
    ("both-fields", "POST", "/predict", json.dumps({"base64": "a", "instances": []}).encode(), "application/json", 400,
     "invalid_request", "not both"),
    ("bad-base64", "POST", "/predict", b'{"base64": "not base64!"}', "application/json", 400, "invalid_base64", "'!'"),
    ("not-an-image", "POST", "/predict", json.dumps({"base64": b64(b"hello, world")}).encode(), "application/json",
     422, "unsupported_image", "not an image"),
    ("truncated-png", "POST", "/predict", json.dumps({"base64": b64(PNG[: len(PNG) // 2])}).encode(),
     "application/json", 422, "unsupported_image", ""),
    ("bad-batch-item", "POST", "/v1/models/mnist/predict",
     json.dumps({"instances": [{"base64": b64(PNG)}, {"base64": b64(b"GIF89a junk")}]}).encode(),
     "application/json", 422, "unsupported_image", "instances[1]"),
    ("pixel-bomb", "POST", "/predict", json.dumps({"base64": b64(_png_declaring(30_000, 30_000))}).encode(),
     "application/json", 413, "image_too_large", "limit"),
    ("over-pixel-limit", "POST", "/predict", json.dumps({"base64": b64(_png_declaring(1001, 1000))}).encode(),
     "application/json", 413, "image_too_large", "1000000"),
    ("batch-too-large", "POST", "/v1/models/mnist/predict",
     json.dumps({"instances": [{"base64": b64(PNG)}] * (MAX_BATCH + 1)}).encode(), "application/json", 413,
     "batch_too_large", str(MAX_BATCH)),
    ("body-too-large", "POST", "/predict", b'{"base64": "' + b"A" * MAX_BODY + b'"}', "application/json", 413,
     "body_too_large", str(MAX_BODY)),
    ("text-content-type", "POST", "/v1/models/fashion-mnist/predict", b"{}", "text/plain", 400,
     "invalid_request", "base64"),
    ("unquoted-but-not-base64", "POST", "/predict", b'{"base64": hello!}', "application/json", 400,
     "invalid_json", "not valid JSON"),
    ("unquoted-extra-key", "POST", "/predict", b'{"base64": iVBOR, "x": 1}', None, 400, "invalid_json", ""),
    ("empty-raw-image", "POST", "/predict", b"", "image/png", 400, "invalid_request", "empty"),
    ("raw-not-an-image", "POST", "/predict", b"hello", "application/octet-stream", 422, "unsupported_image", ""),
    ("multipart-without-file", "POST", "/predict",
     b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--\r\n",
     "multipart/form-data; boundary=b", 400, "invalid_request", "file part"),
    ("unknown-model", "POST", "/v1/models/cifar/predict", b"{}", "application/json", 404, "model_not_found", "cifar"),
    ("unknown-model-card", "GET", "/v1/models/cifar", None, None, 404, "model_not_found", "available"),
    ("unknown-route", "GET", "/v2/everything", None, None, 404, "not_found", "/openapi.json"),
    ("get-predict", "GET", "/predict", None, None, 405, "method_not_allowed", "POST"),
    ("delete-models", "DELETE", "/v1/models", None, None, 405, "method_not_allowed", "GET"),
    ("put-named-predict", "PUT", "/v1/models/mnist/predict", b"{}", "application/json", 405, "method_not_allowed", ""),
]


ALLOWED = {"get-predict": {"POST"}, "delete-models": {"GET"}, "put-named-predict": {"POST"}}


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_matrix(client, caplog, case):
    """Every bad request is the documented JSON error, decided in Flask, and never logged as a bug."""
    name, method, path, body, ctype, status, code, fragment = case
    resp = client.open(path, method=method, data=body, headers={"Content-Type": ctype} if ctype else {})
    assert_error(resp, status, code, fragment)
    if status == 405:
        assert set(resp.headers["Allow"].split(", ")) - {"HEAD", "OPTIONS"} == ALLOWED[name]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_body_far_over_limit_is_refused_before_reading(server):
    """Beyond 2× the limit Waitress itself answers 413 (plain text) from the Content-Length header."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000000000\r\n\r\n{")
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


# --- models, probes --------------------------------------------------------------------------------

def test_models_endpoints(client):
    listed = client.get("/v1/models").json["models"]
    assert [m["name"] for m in listed] == ["mnist", "fashion-mnist"]
    for m in listed:
        c = card(m["name"])
        assert m["labels"] == c["labels"] and m["version"] == c["version"]
        assert m["test_accuracy"] == c["metrics"]["test_accuracy"]
        assert m["input"]["preprocessing"] == c["input"]["preprocessing"]
    detail = client.get("/v1/models/fashion-mnist").json
    assert detail["per_class_accuracy"] == card("fashion-mnist")["metrics"]["per_class_accuracy"]
    assert detail["normalization"] == card("fashion-mnist")["normalization"]


def test_probes(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["models"] == {n: card(n)["version"] for n in ("mnist", "fashion-mnist")}


# --- request ids, logs, metrics --------------------------------------------------------------------

def _access_lines(server) -> list[dict]:
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    return [entry for entry in lines if entry.get("logger") == "backend.access"]


def test_request_id_is_honoured_or_generated_and_logged(server, http):
    resp = http.get(server.url + "/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert resp.headers["X-Request-ID"] == "trace-abc.123"
    for bad in ("has space", "x" * 200, "semi;colon"):
        rid = http.get(server.url + "/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
    error = post(http, server.url + "/predict", b"{", headers={"X-Request-ID": "err-42"})
    assert error.status_code == 400 and error.headers["X-Request-ID"] == "err-42"
    entries = {e["request_id"]: e for e in _access_lines(server)}
    assert entries["trace-abc.123"]["status"] == 200 and entries["trace-abc.123"]["path"] == "/healthz"
    assert entries["err-42"]["status"] == 400 and entries["err-42"]["model"] == "mnist"
    assert entries["err-42"]["duration_ms"] >= 0




def test_metrics_count_requests_predictions_and_latency(server, http):
    before = http.get(server.metrics_url).text
    for _ in range(3):
        post(http, server.url + "/v1/models/mnist/predict", {"base64": b64(sample("mnist", 7))})
    post(http, server.url + "/v1/models/mnist/predict", {"base64": "%%%"})
    post(http, server.url + "/v1/models/secret-probe-name/predict", {"base64": "x"})
    after = http.get(server.metrics_url)
    assert after.headers["Content-Type"].startswith("text/plain")
    text = after.text
    route = "/v1/models/<name>/predict"

    def delta(name, **labels):
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert delta("vision_http_requests_total", route=route, model="mnist", status="200") == 3
    assert delta("vision_http_requests_total", route=route, model="mnist", status="400") == 1
    assert delta("vision_predictions_total", model="mnist", label=_label_of(http, server)) == 3
    assert delta("vision_http_request_duration_seconds_count", route=route) == 5
    assert delta("vision_inference_duration_seconds_count", model="mnist") == 3
    assert delta("vision_preprocessing_duration_seconds_count", model="mnist") == 3
    assert delta("vision_http_request_size_bytes_count", route=route) == 5
    assert metric(text, "vision_ready") == 1
    assert "\nvision_http_queue_depth " in text
    assert metric(text, "vision_http_requests_in_flight") == 0  # a scrape is no API request
    assert "secret-probe-name" not in text  # client-chosen names never become label values


def _label_of(http, server) -> str:
    return post(http, server.url + "/predict", {"base64": b64(sample("mnist", 7))}).json()["label"]


def test_model_info_metric(server, http):
    text = http.get(server.metrics_url).text
    for name in ("mnist", "fashion-mnist"):
        assert metric(text, "vision_model_info", model=name, version=card(name)["version"]) == 1


# --- API keys ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_server():
    with BackendServer(model_dir=test_model_dir(), env={"VISION_API_KEYS": ",".join(KEYS),
                                                        "VISION_MODELS": "mnist"}) as s:
        yield s


def test_api_keys(auth_server, http):
    url = auth_server.url + "/predict"
    body = {"base64": b64(PNG)}
    resp = post(http, url, body)
    assert_error(resp, 401, "unauthorized", "X-API-Key")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(post(http, url, body, headers={"X-API-Key": KEYS[0] + "x"}), 401, "unauthorized")
    assert_error(post(http, url, body, headers={"X-API-Key": KEYS[0][:-1]}), 401, "unauthorized")
    assert_error(post(http, url, body, headers={"Authorization": f"Basic {KEYS[0]}"}), 401, "unauthorized")
    assert_error(http.get(auth_server.url + "/v1/models"), 401, "unauthorized")
    for headers in ({"X-API-Key": KEYS[0]}, {"X-API-Key": KEYS[1]}, {"Authorization": f"Bearer {KEYS[1]}"},
                    {"Authorization": f"bearer {KEYS[0]}"}):
        resp = post(http, url, body, headers=headers)
        assert resp.status_code == 200 and resp.json()["label"] == "1", (headers, resp.text)
    for open_path in ("/healthz", "/readyz", "/openapi.json"):
        assert http.get(auth_server.url + open_path).status_code == 200
    assert http.get(auth_server.metrics_url).status_code == 200  # its own port: no key, no guard
    doc = http.get(auth_server.url + "/openapi.json").json()
    assert doc["security"] == [{"ApiKey": []}, {"Bearer": []}]
    # only the configured model is served
    assert_error(post(http, auth_server.url + "/v1/models/fashion-mnist/predict", body,
                      headers={"X-API-Key": KEYS[0]}), 404, "model_not_found")
    assert KEYS[0] not in auth_server.logs()  # keys are never logged


def test_flask_checks_keys_too(make_app):
    """Behind another WSGI server (no Waitress guard), the app itself refuses a request without a key."""
    client = make_app(api_keys=KEYS, models=("mnist",)).test_client()
    resp = post(client, "/predict", {"base64": b64(PNG)})
    assert_error(resp, 401, "unauthorized", "X-API-Key")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert post(client, "/predict", {"base64": b64(PNG)}, headers={"X-API-Key": KEYS[1]}).json["label"] == "1"
    assert client.get("/healthz").status_code == 200


def test_key_check_is_exact():
    keys = tuple(k.encode() for k in KEYS)
    assert key_is_valid(KEYS[0], keys) and key_is_valid(KEYS[1], keys)
    for wrong in (None, "", KEYS[0].upper(), KEYS[0] + " ", KEYS[1][1:], "ü" * 20):
        assert not key_is_valid(wrong, keys)


# --- bounded fuzz over HTTP: the full pipeline never answers 500 ---------------------------------

def test_fuzzed_bodies_never_500(client):
    import random

    rng = random.Random(1234)
    seeds = [PNG, encode(_canvas("RGB"), "JPEG"), encode(_canvas("RGBA"), "WEBP"), encode(_canvas("RGB"), "GIF")]
    seen = set()
    for i in range(300):
        data = bytearray(rng.choice(seeds))
        if i % 3 == 0:
            data = data[: rng.randrange(len(data))]
        for _ in range(rng.randint(0, 6)):
            data[rng.randrange(len(data) or 1)] = rng.randrange(256) if data else 0
        resp = post(client, "/predict", {"base64": b64(bytes(data))})
        assert resp.status_code in (200, 400, 413, 422), resp.text
        seen.add(resp.status_code)
    assert {200, 422} <= seen


def _raw_http(port: int, request: bytes) -> tuple[int, dict]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def test_chunked_bodies_are_accepted_and_limited(server):
    head = (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    status, body = _raw_http(server.port, head + _chunked(json.dumps({"base64": b64(PNG)}).encode()))
    assert status == 200 and body["label"] == "1"
    status, body = _raw_http(server.port, head + _chunked(b'{"base64": "' + b"A" * MAX_BODY + b'"}', 65536))
    assert status == 413 and body["error"]["code"] == "body_too_large"


# --- property: any JSON body gets a well-formed answer, never a 500 -------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
_bodies = st.one_of(
    _json_values,
    st.fixed_dictionaries({"base64": st.one_of(st.text(max_size=60), _json_values)},
                          optional={"return_input": _json_values}),
    st.fixed_dictionaries({"instances": st.lists(st.one_of(
        st.fixed_dictionaries({"base64": st.sampled_from([b64(PNG), "", "@@", b64(b"GIF89a")])}), _json_values),
        max_size=MAX_BATCH + 2)}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_any_json_body_gets_a_documented_answer(client, body):
    resp = post(client, "/v1/models/mnist/predict", body)
    assert resp.status_code in (200, 400, 413, 422), resp.text
    if resp.status_code == 200:
        got = resp.json
        assert got["model"] == "mnist"
        assert "predictions" in got or len(got["probabilities"]) == 10
    else:
        assert_error(resp, resp.status_code, resp.json["error"]["code"])


def test_server_survives_bad_requests(server, http):
    """After this module's malformed, oversized and chunked requests: still serving, nothing logged as a bug."""
    assert http.get(server.url + "/healthz").json() == {"status": "ok"}
    assert post(http, server.url + "/predict", {"base64": b64(PNG)}).json()["label"] == "1"
    assert "Traceback" not in server.logs() and '"level": "ERROR"' not in server.logs()
