"""Open Inference Protocol v2 against the real server with the real third-party client
(``tritonclient[http]``), plus the protocol's error shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from repo import SAMPLES
from tritonclient.utils import InferenceServerException

from devkit.backend_server import test_model_dir


@pytest.fixture(scope="module")
def server_env():
    return {"VISION_MAX_BATCH": "16"}


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(f"127.0.0.1:{server.port}")


def files(dataset: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((SAMPLES / dataset).glob("*.png"))]


def predicted(server, path: str, data: bytes) -> list[float]:
    return requests.post(server.url + path, data=data, headers={"Content-Type": "image/png"}).json()["probabilities"]


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "vision-ai"
    for name in ("mnist", "fashion-mnist"):
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
        assert meta["outputs"][0]["shape"] == [-1, 10]


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("name,dataset", [("mnist", "mnist"), ("fashion-mnist", "fashion-mnist")])
def test_bytes_input_matches_predict(server, client, name, dataset, binary):
    images = files(dataset)
    inp = triton.InferInput("image", [len(images)], "BYTES")
    if binary:
        inp.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    else:  # JSON BYTES elements: base64 text of each file
        import base64
        inp.set_data_from_numpy(np.array([base64.b64encode(b) for b in images], dtype=np.object_), binary_data=False)
    result = client.infer(name, [inp])
    probs = result.as_numpy("probabilities")
    assert probs.shape == (10, 10)
    want = np.array([predicted(server, f"/v1/models/{name}/predict", b) for b in images])
    np.testing.assert_allclose(probs, want, atol=1e-6)
    assert (probs.argmax(1) == np.arange(10)).mean() >= 0.8  # samples are named <label>-<index>


@pytest.mark.parametrize("binary", [True, False])
def test_fp32_input_is_the_normalised_tensor(server, client, binary):
    import io

    from PIL import Image

    from backend.model.preprocessing import preprocess

    card = json.loads((test_model_dir() / "mnist.json").read_text())
    images = files("mnist")
    x = np.stack([preprocess(Image.open(io.BytesIO(b)), "digit") for b in images])
    x = ((x - card["normalization"]["mean"]) / card["normalization"]["std"]).astype(np.float32)[:, None]
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    probs = client.infer("mnist", [inp], outputs=[triton.InferRequestedOutput("probabilities")]).as_numpy(
        "probabilities")
    want = np.array([predicted(server, "/predict", b) for b in images])
    np.testing.assert_allclose(probs, want, atol=1e-5)


def test_requested_outputs_are_the_ones_returned(server, client):
    images = files("mnist")[:3]
    inp = triton.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    every = client.infer("mnist", [inp])
    picked = client.infer("mnist", [inp], outputs=[triton.InferRequestedOutput("in_distribution"),
                                                   triton.InferRequestedOutput("ood_score")])
    assert [o["name"] for o in every.get_response()["outputs"]] == ["probabilities", "ood_score", "in_distribution"]
    assert [o["name"] for o in picked.get_response()["outputs"]] == ["ood_score", "in_distribution"]
    assert picked.as_numpy("probabilities") is None
    np.testing.assert_array_equal(picked.as_numpy("in_distribution"), every.as_numpy("in_distribution"))
    np.testing.assert_allclose(picked.as_numpy("ood_score"), every.as_numpy("ood_score"), atol=1e-6)
    with pytest.raises(InferenceServerException, match="unknown output 'logits'"):
        client.infer("mnist", [inp], outputs=[triton.InferRequestedOutput("logits")])


def test_errors_use_the_protocol_shape(server, client):
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("cifar")
    bad = triton.InferInput("input", [1, 1, 27, 28], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 1, 27, 28), np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("mnist", [bad])
    cases = [b"not json", b"[]", b'{"inputs": []}',
             b'{"inputs": [{"name": "input", "datatype": "INT8", "shape": [1], "data": [1]}]}',
             b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1,1,28,28], "data": [1, 2]}]}',
             b'{"inputs": [{"name": "i", "datatype": "BYTES", "shape": [1], "data": ["aGVsbG8="]}]}',
             b'{"inputs": [{"name": "i", "datatype": "BYTES", "shape": [99], "data": []}]}',
             b'{"inputs": [{"name": "i", "datatype": "BYTES", "shape": [1], "data": []}], "outputs": {}}',
             b'{"inputs": [{"name": "i", "datatype": "BYTES", "shape": [1], "data": []}], "outputs": [1]}']
    for body in cases:
        resp = requests.post(server.url + "/v2/models/mnist/infer", data=body)
        assert 400 <= resp.status_code < 500, (body, resp.text)
        assert set(resp.json()) == {"error"} and isinstance(resp.json()["error"], str), resp.text
    resp = requests.get(server.url + "/v2/models/cifar/ready")
    assert resp.status_code == 404 and "unknown model 'cifar'" in resp.json()["error"]
