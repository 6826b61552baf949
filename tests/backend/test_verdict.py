"""The out-of-distribution verdict on every prediction and strict mode, on the real ONNX models.

The verdict is checked against an independent computation (ONNX Runtime on the shipped graph and
the threshold read from the model card file), so the routes cannot pass by agreeing with themselves;
the responses are validated against /openapi.json; the metrics are read from a real server.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.http as triton
from jsonschema import Draft202012Validator
from ood_images import noise_png
from PIL import Image
from repo import SAMPLES

from backend.config import Config, ConfigError
from backend.preprocessing import preprocess
from devkit.backend_server import test_model_dir

NOISE = [noise_png(seed) for seed in range(6)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sample(dataset: str, index: int) -> bytes:
    return next((SAMPLES / dataset).glob(f"{index}-*.png")).read_bytes()


def card(name: str) -> dict:
    return json.loads((test_model_dir() / f"{name}.json").read_text())


_sessions: dict[str, ort.InferenceSession] = {}


def independent_verdict(name: str, data: bytes) -> tuple[float, bool]:
    """ood_score and verdict straight from ONNX Runtime and the card file, not through the backend."""
    c = card(name)
    if name not in _sessions:
        _sessions[name] = ort.InferenceSession(str(test_model_dir() / f"{name}.onnx"),
                                               providers=["CPUExecutionProvider"])
    x = preprocess(Image.open(io.BytesIO(data)), c["input"]["preprocessing"])
    x = ((x - c["normalization"]["mean"]) / c["normalization"]["std"]).astype(np.float32)[None, None]
    (score,) = _sessions[name].run([c["ood"]["output"]], {c["input"]["name"]: x})
    value = float(np.asarray(score).reshape(-1)[0])
    return value, value <= c["ood"]["threshold"]


def schema(client, path: str, status: int = 200, method: str = "post") -> Draft202012Validator:
    doc = client.get("/openapi.json").json
    s = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return Draft202012Validator({**s, "components": doc["components"]})


def valid(client, path: str, resp) -> dict:
    errors = [e.message for e in schema(client, path, resp.status_code).iter_errors(resp.json)]
    assert not errors, errors
    return resp.json


# --- the verdict ---------------------------------------------------------------------------------

def test_digits_are_in_distribution_and_noise_is_not(client):
    for i in range(10):
        data = sample("mnist", i)
        body = valid(client, "/predict", client.post("/predict", json={"base64": b64(data)}))
        score, ok = independent_verdict("mnist", data)
        assert body["ood_score"] == pytest.approx(score, rel=1e-5, abs=1e-5)
        assert body["in_distribution"] is ok is True, (i, score)
        assert "reason" not in body and body["label"] == str(i)
    for data in NOISE:
        body = valid(client, "/predict", client.post("/predict", json={"base64": b64(data)}))
        score, ok = independent_verdict("mnist", data)
        assert body["ood_score"] == pytest.approx(score, rel=1e-5, abs=1e-5)
        assert body["in_distribution"] is ok is False, score
        # Not strict: the label stays (the assignment's clients read it), the reason says why.
        assert body["label"] in card("mnist")["labels"] and isinstance(body["class_index"], int)
        assert body["reason"].startswith("this does not look like a handwritten digit")
        assert f"{card('mnist')['ood']['threshold']:.4g}" in body["reason"]


def test_the_fashion_model_says_clothing_item(client):
    url = "/v1/models/fashion-mnist/predict"
    for i in range(10):
        body = client.post(url, json={"base64": b64(sample("fashion-mnist", i))}).json
        assert body["in_distribution"] is True, (i, body["ood_score"])
    body = valid(client, "/v1/models/{name}/predict", client.post(url, json={"base64": b64(NOISE[0])}))
    assert body["in_distribution"] is False
    assert body["reason"].startswith("this does not look like a clothing item")


def test_batch_items_carry_their_own_verdict(client):
    images = [sample("mnist", 3), NOISE[1], sample("mnist", 8), NOISE[2]]
    resp = client.post("/v1/models/mnist/predict", json={"instances": [{"base64": b64(d)} for d in images]})
    body = valid(client, "/v1/models/{name}/predict", resp)
    assert [p["in_distribution"] for p in body["predictions"]] == [True, False, True, False]
    for p, data in zip(body["predictions"], images, strict=True):
        assert p["ood_score"] == pytest.approx(independent_verdict("mnist", data)[0], rel=1e-5, abs=1e-5)
        assert ("reason" in p) is (not p["in_distribution"])


def test_the_assignment_curl_body_still_works(client):
    """The literal, unquoted ``{"base64": iVBOR...}`` of the assignment: same answer plus the verdict."""
    raw = b'{"base64": ' + b64(sample("mnist", 7)).encode() + b"}"
    body = client.post("/predict", data=raw, content_type="application/x-www-form-urlencoded").json
    assert body["label"] == "7" and body["in_distribution"] is True and body["ood_score"] <= 1e30


# --- strict mode ---------------------------------------------------------------------------------

def test_strict_request_abstains_only_out_of_distribution(client):
    noise = client.post("/predict", json={"base64": b64(NOISE[0]), "strict": True})
    body = valid(client, "/predict", noise)
    assert noise.status_code == 200
    assert body["label"] is None and body["class_index"] is None and body["in_distribution"] is False
    assert body["reason"].startswith("this does not look like a handwritten digit")
    assert len(body["probabilities"]) == 10 and body["confidence"] == max(body["probabilities"])
    digit = client.post("/predict", json={"base64": b64(sample("mnist", 4)), "strict": True}).json
    assert digit["label"] == "4" and digit["class_index"] == 4 and "reason" not in digit


def test_strict_in_a_batch_abstains_per_item(client):
    resp = client.post("/v1/models/mnist/predict?strict=true",
                       json={"instances": [{"base64": b64(sample("mnist", 2))}, {"base64": b64(NOISE[3])}]})
    first, second = valid(client, "/v1/models/{name}/predict", resp)["predictions"]
    assert first["label"] == "2" and second["label"] is None and second["class_index"] is None


@pytest.mark.parametrize("query, field, abstains", [
    ("?strict=true", None, True), ("?strict", None, True), ("?strict=1", False, True),
    ("?strict=false", True, False), ("", True, True), ("", False, False), ("", None, False)])
def test_query_overrides_body_overrides_server(client, query, field, abstains):
    body = {"base64": b64(NOISE[4])} | ({} if field is None else {"strict": field})
    got = client.post("/predict" + query, json=body).json
    assert (got["label"] is None) is abstains


def test_multipart_strict_field(client):
    resp = client.post("/predict", data={"file": (io.BytesIO(NOISE[0]), "noise.png"), "strict": "true"},
                       content_type="multipart/form-data")
    assert resp.status_code == 200 and resp.json["label"] is None


@pytest.mark.parametrize("url, body", [
    ("/predict?strict=maybe", {"base64": b64(NOISE[0])}),
    ("/predict", {"base64": b64(NOISE[0]), "strict": "yes"}),
    ("/predict", {"base64": b64(NOISE[0]), "strict": None}),
    ("/v1/models/mnist/explain?strict=2", {"base64": b64(NOISE[0])}),
])
def test_bad_strict_values_are_a_clear_400(client, url, body):
    resp = client.post(url, json=body)
    assert resp.status_code == 400
    assert resp.json["error"]["code"] == "invalid_request" and "strict" in resp.json["error"]["message"]


def test_server_wide_strict_mode(make_app):
    client = make_app(ood_strict=True).test_client()
    assert client.post("/predict", json={"base64": b64(NOISE[0])}).json["label"] is None
    assert client.post("/predict", json={"base64": b64(NOISE[0]), "strict": False}).json["label"] is not None
    assert client.post("/predict", json={"base64": b64(sample("mnist", 1))}).json["label"] == "1"
    doc = client.get("/openapi.json").json
    assert "VISION_OOD_STRICT, here true" in doc["components"]["schemas"]["SingleRequest"]["properties"][
        "strict"]["description"]


def test_strict_setting_is_validated(tmp_path):
    assert Config.from_env({"VISION_MODEL_DIR": str(tmp_path)}).ood_strict is False
    assert Config.from_env({"VISION_MODEL_DIR": str(tmp_path), "VISION_OOD_STRICT": "on"}).ood_strict is True
    with pytest.raises(ConfigError, match="VISION_OOD_STRICT='maybe' is not a boolean"):
        Config.from_env({"VISION_MODEL_DIR": str(tmp_path), "VISION_OOD_STRICT": "maybe"})


# --- explain -------------------------------------------------------------------------------------

def test_explain_carries_the_verdict_and_strict_mode(client):
    url = "/v1/models/mnist/explain"
    digit = valid(client, "/v1/models/{name}/explain", client.post(url, json={"base64": b64(sample("mnist", 5))}))
    assert digit["in_distribution"] is True and digit["label"] == "5"
    noise = valid(client, "/v1/models/{name}/explain", client.post(url, json={"base64": b64(NOISE[5])}))
    assert noise["in_distribution"] is False and noise["label"] is not None
    assert noise["ood_score"] == pytest.approx(independent_verdict("mnist", NOISE[5])[0], rel=1e-5, abs=1e-5)
    strict = valid(client, "/v1/models/{name}/explain",
                   client.post(url + "?strict=true", json={"base64": b64(NOISE[5])}))
    assert strict["label"] is None and strict["class_index"] is None and len(strict["attributions"]) == 28


# --- the real server: v2 and metrics -------------------------------------------------------------

@pytest.fixture(scope="module")
def server_env():
    return {"VISION_OOD_STRICT": "1"}


def test_v2_returns_the_verdict_as_outputs(server):
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    meta = client.get_model_metadata("mnist")
    assert meta["outputs"][1:] == [{"name": "ood_score", "datatype": "FP32", "shape": [-1]},
                                   {"name": "in_distribution", "datatype": "BOOL", "shape": [-1]}]
    images = [sample("mnist", 0), NOISE[0], sample("mnist", 9), NOISE[1]]
    inp = triton.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    result = client.infer("mnist", [inp])
    scores, verdicts = result.as_numpy("ood_score"), result.as_numpy("in_distribution")
    assert scores.dtype == np.float32 and verdicts.dtype == np.bool_
    assert verdicts.tolist() == [True, False, True, False]
    want = [independent_verdict("mnist", d)[0] for d in images]
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)
    assert result.as_numpy("probabilities").shape == (4, 10)


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_verdicts_confidence_classes_and_abstentions(server):
    http = requests.Session()
    before = http.get(server.url + "/metrics").text
    # Every class of every model is exported before its first prediction (the class-mix rule needs
    # all of them), and the card's baseline beside it.
    for name in ("mnist", "fashion-mnist"):
        c = card(name)
        assert _metric(before, "vision_model_ood_baseline_ratio", model=name) == pytest.approx(
            c["ood"]["baseline"]["ood_share"])
        for label in c["labels"]:
            assert f'vision_predictions_total{{label="{label}",model="{name}"}}' in before
            assert _metric(before, "vision_model_class_share_baseline", model=name, label=label) == pytest.approx(
                c["ood"]["baseline"]["class_share"][label])
    url = server.url + "/v1/models/mnist/predict"
    http.post(url, json={"instances": [{"base64": b64(sample("mnist", 6))}, {"base64": b64(NOISE[0])},
                                       {"base64": b64(NOISE[1])}]})  # the server is strict: 2 abstain
    http.post(url + "?strict=false", json={"base64": b64(NOISE[2])})
    after = http.get(server.url + "/metrics").text

    def delta(name, **labels):
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("vision_ood_verdicts_total", model="mnist", verdict="in_distribution") == 1
    assert delta("vision_ood_verdicts_total", model="mnist", verdict="out_of_distribution") == 3
    assert delta("vision_abstentions_total", model="mnist") == 2
    assert delta("vision_prediction_confidence_count", model="mnist") == 4
    assert delta("vision_predictions_total", model="mnist") == 4  # the most probable class, abstained or not
    assert delta("vision_predictions_total", model="mnist", label="6") >= 1
    assert delta("vision_ood_verdicts_total", model="fashion-mnist") == 0


def test_strict_server_answers_the_abstention_over_http(server):
    resp = requests.post(server.url + "/predict", json={"base64": b64(NOISE[0])})
    assert resp.status_code == 200 and resp.json()["label"] is None and resp.json()["reason"]
