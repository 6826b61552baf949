"""vision_client against a real backend on loopback, plus the failure modes a client meets in
the wild (nothing listening, a hung server, a proxy answering HTML) served by real sockets."""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time

import pytest
from repo import SAMPLES

from devkit.backend_server import BackendServer, free_port, test_model_dir
from vision_client import ApiError, ApiUnavailable, ClientError, VisionClient, encode_image


@pytest.fixture(scope="module")
def server_env():
    return {"VISION_THREADS": "4"}


@pytest.fixture(scope="module")
def client(server):
    with VisionClient(server.url) as c:
        yield c


def sample(dataset: str, index: int) -> bytes:
    return next((SAMPLES / dataset).glob(f"{index}-*.png")).read_bytes()


# -- against the real backend ------------------------------------------------------------------

def test_probes_and_models(client):
    assert client.health() is True
    assert client.ready() is True
    names = [m["name"] for m in client.models()]
    assert {"mnist", "fashion-mnist"} <= set(names)
    card = client.model("fashion-mnist")
    assert card["name"] == "fashion-mnist"
    assert len(card["labels"]) == 10


def test_predict_returns_the_api_answer(client):
    result = client.predict(sample("mnist", 3))
    assert result["model"] == "mnist"
    assert result["class_index"] == int(result["label"])
    assert len(result["probabilities"]) == 10
    assert abs(sum(result["probabilities"]) - 1) < 1e-3
    assert result["confidence"] == pytest.approx(max(result["probabilities"]), abs=1e-6)


def test_predict_carries_the_verdict_and_strict_mode(client):
    from ood_images import flagged, kept

    (_, image), unusual = kept("mnist")[0], flagged("mnist")[0]
    digit = client.predict(image)
    assert digit["in_distribution"] is True and isinstance(digit["ood_score"], float) and "reason" not in digit
    noise = client.predict(unusual)
    assert noise["in_distribution"] is False and noise["label"] is not None
    assert noise["reason"].startswith("this does not look like a handwritten digit")
    strict = client.predict(unusual, strict=True)
    assert strict["label"] is None and strict["class_index"] is None and strict["ood_score"] == noise["ood_score"]
    batch = client.predict_batch([image, unusual], strict=True)["predictions"]
    assert [p["label"] for p in batch] == [digit["label"], None]
    explained = client.explain(unusual, strict=True)
    assert explained["label"] is None and explained["in_distribution"] is False


def test_predict_with_input_and_other_model(client):
    result = client.predict(sample("fashion-mnist", 1), model="fashion-mnist", return_input=True)
    assert_prediction(result, "fashion-mnist", "Trouser", 1)
    # the 28×28 as the model sees it (PNG), for the frontend
    from io import BytesIO

    from PIL import Image
    assert Image.open(BytesIO(base64.b64decode(result["input_image"]))).size == (28, 28)


def assert_prediction(result: dict, model: str, label: str, class_index: int) -> None:
    """A whole /predict answer: the right class, and probabilities that are a distribution whose
    maximum is the reported confidence."""
    assert (result["model"], result["label"], result["class_index"]) == (model, label, class_index)
    probs = result["probabilities"]
    assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-3
    assert result["confidence"] == pytest.approx(max(probs)) and probs.index(max(probs)) == class_index


def test_predict_default_endpoint(client):
    assert_prediction(client.predict_default(sample("mnist", 7)), "mnist", "7", 7)


def test_predict_batch_keeps_order(client):
    images = [sample("mnist", i) for i in (0, 1, 7)]
    batch = client.predict_batch(images, model="mnist")
    singles = [client.predict(img)["class_index"] for img in images]
    assert [p["class_index"] for p in batch["predictions"]] == singles


def test_api_errors_carry_status_and_code(client):
    with pytest.raises(ApiError) as info:
        client.model("no-such-model")
    assert info.value.status == 404 and info.value.code and info.value.message
    with pytest.raises(ApiError) as info:
        client.predict(b"definitely not an image")
    assert info.value.status == 422
    assert isinstance(info.value, ClientError)


def test_api_key_is_sent():
    keys = ["first-key-0123456789", "second-key-0123456789"]
    env = {"VISION_API_KEYS": ",".join(keys), "VISION_THREADS": "2"}
    with BackendServer(model_dir=test_model_dir(), env=env) as srv:
        with pytest.raises(ApiError) as info:
            VisionClient(srv.url, api_key="").predict(sample("mnist", 1))
        assert info.value.status == 401
        assert VisionClient(srv.url, api_key=keys[1]).predict(sample("mnist", 1))["model"] == "mnist"


# -- failure modes on real sockets -------------------------------------------------------------

def test_nothing_listening_is_unavailable():
    c = VisionClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ApiUnavailable) as info:
        c.models()
    assert "refused" in info.value.reason
    assert c.ready() is False and c.health() is False


def test_hung_server_times_out():
    with socket.socket() as listener:  # accepts (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        c = VisionClient(f"http://127.0.0.1:{port}", timeout=0.3)
        start = time.monotonic()
        with pytest.raises(ApiUnavailable, match=r"no answer within 0.3s"):
            c.predict(b"x")
        assert time.monotonic() - start < 5


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """What a misconfigured ingress or tunnel answers: HTML, not the API's JSON."""

    def do_GET(self):
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_non_json_error_is_still_an_api_error():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ApiError) as info:
            VisionClient(f"http://127.0.0.1:{server.server_port}").models()
        assert info.value.status == 502
        assert info.value.code == "http_error"
        assert "502 Bad Gateway" in info.value.message
    finally:
        server.shutdown()
        server.server_close()


# -- configuration -----------------------------------------------------------------------------

def test_defaults_come_from_env(monkeypatch):
    monkeypatch.setenv("VISION_API_URL", "http://api.example:9000/")
    monkeypatch.setenv("VISION_API_KEY", "secret")
    monkeypatch.setenv("VISION_API_TIMEOUT", "2.5")
    c = VisionClient()
    assert (c.base_url, c.api_key, c.timeout) == ("http://api.example:9000", "secret", 2.5)
    assert c.session.headers["X-API-Key"] == "secret"
    assert "secret" not in repr(c)
    explicit = VisionClient("https://other", api_key="k", timeout=1)
    assert (explicit.base_url, explicit.api_key, explicit.timeout) == ("https://other", "k", 1.0)


def test_builtin_defaults(monkeypatch):
    for name in ("VISION_API_URL", "VISION_API_KEY", "VISION_API_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    c = VisionClient()
    assert (c.base_url, c.api_key, c.timeout) == ("http://127.0.0.1:8080", None, 10.0)
    assert "X-API-Key" not in c.session.headers


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_bad_timeout_env_is_rejected(monkeypatch, value):
    monkeypatch.setenv("VISION_API_TIMEOUT", value)
    with pytest.raises(ValueError, match="VISION_API_TIMEOUT"):
        VisionClient("http://127.0.0.1:1")


def test_bad_url_is_rejected():
    with pytest.raises(ValueError, match="http://"):
        VisionClient("127.0.0.1:8080")


def test_encode_image_roundtrip():
    data = bytes(range(256))
    assert base64.b64decode(encode_image(data)) == data
