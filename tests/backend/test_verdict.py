"""The out-of-distribution verdict on every prediction and strict mode, on the real ONNX models.

The verdict is checked against an independent computation (ONNX Runtime on the shipped graph and
the threshold read from the model card file, tests/support/ood_images.py), so the routes cannot pass
by agreeing with themselves; the responses are validated against /openapi.json; the metrics are read
from a real server.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from jsonschema import Draft202012Validator
from ood_images import card, flagged, kept, samples, verdict
from prom_text import metric

from backend.config import Config, ConfigError

OOD = flagged("mnist", 4)  # images the mnist model's threshold calls out of distribution
DIGITS = kept("mnist")  # (class, image) of the shipped digit samples it keeps


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def schema(client, path: str, status: int = 200, method: str = "post") -> Draft202012Validator:
    doc = client.get("/openapi.json").json
    s = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return Draft202012Validator({**s, "components": doc["components"]})


def valid(client, path: str, resp, method: str = "post") -> dict:
    errors = [e.message for e in schema(client, path, resp.status_code, method).iter_errors(resp.json)]
    assert not errors, errors
    return resp.json


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-5, abs=1e-5)


# --- the verdict ---------------------------------------------------------------------------------

def test_predict_reports_the_models_verdict(client):
    assert len(DIGITS) >= 8, "the shipped digit samples should be in distribution"
    for i, data in DIGITS:
        body = valid(client, "/predict", client.post("/predict", json={"base64": b64(data)}))
        assert close(body["ood_score"], verdict("mnist", data)[0])
        assert body["in_distribution"] is True and "reason" not in body and body["label"] == str(i)
    for data in OOD:
        body = valid(client, "/predict", client.post("/predict", json={"base64": b64(data)}))
        assert close(body["ood_score"], verdict("mnist", data)[0]) and body["in_distribution"] is False
        # Not strict: the label stays (the assignment's clients read it), the reason says why.
        assert body["label"] in card("mnist")["labels"] and isinstance(body["class_index"], int)
        assert body["reason"].startswith("this does not look like a handwritten digit")
        assert f"{card('mnist')['ood']['threshold']:.4g}" in body["reason"]


def test_the_model_detail_serves_the_cards_ood_section(client):
    for name in ("mnist", "fashion-mnist"):
        body = valid(client, "/v1/models/{name}", client.get(f"/v1/models/{name}"), "get")
        assert body["ood"] == card(name)["ood"]


def test_the_fashion_model_says_clothing_item(client):
    url = "/v1/models/fashion-mnist/predict"
    for _, data in kept("fashion-mnist"):
        assert client.post(url, json={"base64": b64(data)}).json["in_distribution"] is True
    (data,) = flagged("fashion-mnist")
    body = valid(client, "/v1/models/{name}/predict", client.post(url, json={"base64": b64(data)}))
    assert body["in_distribution"] is False and close(body["ood_score"], verdict("fashion-mnist", data)[0])
    assert body["reason"].startswith("this does not look like a clothing item")


def test_batch_items_carry_their_own_verdict(client):
    images = [DIGITS[0][1], OOD[0], DIGITS[1][1], OOD[1]]
    resp = client.post("/v1/models/mnist/predict", json={"instances": [{"base64": b64(d)} for d in images]})
    body = valid(client, "/v1/models/{name}/predict", resp)
    assert [p["in_distribution"] for p in body["predictions"]] == [True, False, True, False]
    for p, data in zip(body["predictions"], images, strict=True):
        assert close(p["ood_score"], verdict("mnist", data)[0])
        assert ("reason" in p) is (not p["in_distribution"])


def test_the_assignment_curl_body_still_works(client):
    """The literal, unquoted ``{"base64": iVBOR...}`` of the assignment: same answer plus the verdict."""
    seven = samples("mnist")[7]
    raw = b'{"base64": ' + b64(seven).encode() + b"}"
    body = client.post("/predict", data=raw, content_type="application/x-www-form-urlencoded").json
    assert body["label"] == "7" and body["in_distribution"] is verdict("mnist", seven)[1]
    assert close(body["ood_score"], verdict("mnist", seven)[0])


# --- strict mode ---------------------------------------------------------------------------------

def test_strict_request_abstains_only_out_of_distribution(client):
    resp = client.post("/predict", json={"base64": b64(OOD[0]), "strict": True})
    body = valid(client, "/predict", resp)
    assert resp.status_code == 200
    assert body["label"] is None and body["class_index"] is None and body["in_distribution"] is False
    assert body["reason"].startswith("this does not look like a handwritten digit")
    assert len(body["probabilities"]) == 10 and body["confidence"] == max(body["probabilities"])
    i, data = DIGITS[2]
    digit = client.post("/predict", json={"base64": b64(data), "strict": True}).json
    assert digit["label"] == str(i) and digit["class_index"] == i and "reason" not in digit


def test_strict_in_a_batch_abstains_per_item(client):
    resp = client.post("/v1/models/mnist/predict?strict=true",
                       json={"instances": [{"base64": b64(DIGITS[3][1])}, {"base64": b64(OOD[2])}]})
    first, second = valid(client, "/v1/models/{name}/predict", resp)["predictions"]
    assert first["label"] == str(DIGITS[3][0]) and second["label"] is None and second["class_index"] is None


@pytest.mark.parametrize("query, field, abstains", [
    ("?strict=true", None, True), ("?strict", None, True), ("?strict=1", False, True),
    ("?strict=false", True, False), ("", True, True), ("", False, False), ("", None, False)])
def test_query_overrides_body_overrides_server(client, query, field, abstains):
    body = {"base64": b64(OOD[3])} | ({} if field is None else {"strict": field})
    got = client.post("/predict" + query, json=body).json
    assert (got["label"] is None) is abstains


def test_multipart_strict_field(client):
    resp = client.post("/predict", data={"file": (io.BytesIO(OOD[0]), "noise.png"), "strict": "true"},
                       content_type="multipart/form-data")
    assert resp.status_code == 200 and resp.json["label"] is None


@pytest.mark.parametrize("url, body", [
    ("/predict?strict=maybe", {"base64": b64(OOD[0])}),
    ("/predict", {"base64": b64(OOD[0]), "strict": "yes"}),
    ("/predict", {"base64": b64(OOD[0]), "strict": None}),
    ("/v1/models/mnist/explain?strict=2", {"base64": b64(OOD[0])}),
])
def test_bad_strict_values_are_a_clear_400(client, url, body):
    resp = client.post(url, json=body)
    assert resp.status_code == 400
    assert resp.json["error"]["code"] == "invalid_request" and "strict" in resp.json["error"]["message"]


def test_server_wide_strict_mode(make_app):
    client = make_app(ood_strict=True).test_client()
    assert client.post("/predict", json={"base64": b64(OOD[0])}).json["label"] is None
    assert client.post("/predict", json={"base64": b64(OOD[0]), "strict": False}).json["label"] is not None
    i, data = DIGITS[0]
    assert client.post("/predict", json={"base64": b64(data)}).json["label"] == str(i)
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
    i, data = DIGITS[4]
    digit = valid(client, "/v1/models/{name}/explain", client.post(url, json={"base64": b64(data)}))
    assert digit["in_distribution"] is True and digit["label"] == str(i)
    noise = valid(client, "/v1/models/{name}/explain", client.post(url, json={"base64": b64(OOD[1])}))
    assert noise["in_distribution"] is False and noise["label"] is not None
    assert close(noise["ood_score"], verdict("mnist", OOD[1])[0])
    strict = valid(client, "/v1/models/{name}/explain",
                   client.post(url + "?strict=true", json={"base64": b64(OOD[1])}))
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
    images = [DIGITS[0][1], OOD[0], DIGITS[-1][1], OOD[1]]
    inp = triton.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    result = client.infer("mnist", [inp])
    scores, verdicts = result.as_numpy("ood_score"), result.as_numpy("in_distribution")
    assert scores.dtype == np.float32 and verdicts.dtype == np.bool_
    assert verdicts.tolist() == [True, False, True, False]
    want = [verdict("mnist", d)[0] for d in images]
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)
    assert result.as_numpy("probabilities").shape == (4, 10)




def test_metrics_count_verdicts_confidence_classes_and_abstentions(server):
    http = requests.Session()
    before = http.get(server.metrics_url).text
    # Every class of every model is exported before its first prediction (the class-mix rule needs
    # all of them), and the card's baseline beside it.
    for name in ("mnist", "fashion-mnist"):
        c = card(name)
        assert metric(before, "vision_model_ood_baseline_ratio", model=name) == pytest.approx(
            c["ood"]["baseline"]["ood_share"])
        for label in c["labels"]:
            assert f'vision_predictions_total{{label="{label}",model="{name}"}}' in before
            assert metric(before, "vision_model_class_share_baseline", model=name, label=label) == pytest.approx(
                c["ood"]["baseline"]["class_share"][label])
    url = server.url + "/v1/models/mnist/predict"
    i, data = DIGITS[5]
    http.post(url, json={"instances": [{"base64": b64(data)}, {"base64": b64(OOD[0])},
                                       {"base64": b64(OOD[1])}]})  # the server is strict: 2 abstain
    http.post(url + "?strict=false", json={"base64": b64(OOD[2])})
    after = http.get(server.metrics_url).text

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("vision_ood_verdicts_total", model="mnist", verdict="in_distribution") == 1
    assert delta("vision_ood_verdicts_total", model="mnist", verdict="out_of_distribution") == 3
    assert delta("vision_abstentions_total", model="mnist") == 2
    assert delta("vision_prediction_confidence_count", model="mnist") == 4
    assert delta("vision_predictions_total", model="mnist") == 4  # the most probable class, abstained or not
    assert delta("vision_predictions_total", model="mnist", label=str(i)) >= 1
    assert delta("vision_ood_verdicts_total", model="fashion-mnist") == 0


def test_strict_server_answers_the_abstention_over_http(server):
    resp = requests.post(server.url + "/predict", json={"base64": b64(OOD[0])})
    assert resp.status_code == 200 and resp.json()["label"] is None and resp.json()["reason"]
