"""/openapi.json is a valid OpenAPI 3.1 document, and the app's responses conform to it (in-process:
Flask's test client on the app factory with the test config; schemathesis does the same against the
real server)."""

from __future__ import annotations

import base64
import json

import pytest
from api_errors import json_body
from backend_limits import MAX_BATCH
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from repo import SAMPLES

from backend.config import Config
from backend.contract import ERROR_CODES
from backend.web.openapi import openapi_document


@pytest.fixture(scope="module")
def doc(app) -> dict:
    resp = app.test_client().get("/openapi.json")
    assert resp.status_code == 200
    return resp.json


def response_schema(doc: dict, path: str, method: str, status: int) -> Draft202012Validator:
    """The JSON schema the document promises for this response, resolvable against the document."""
    responses = doc["paths"][path][method]["responses"]
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": doc["components"]},
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def check(doc, path, method, resp):
    errors = sorted(response_schema(doc, path, method, resp.status_code).iter_errors(json_body(resp)), key=str)
    assert not errors, f"{method.upper()} {path} {resp.status_code}: {[e.message for e in errors]}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_document_is_valid_openapi_31(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert {"/predict", "/v1/models/{name}/predict", "/v1/models", "/v1/models/{name}", "/healthz", "/readyz",
            "/openapi.json"} <= set(doc["paths"])
    assert "/metrics" not in doc["paths"]  # the operator's port, not the API


def test_document_reflects_the_running_config(doc):
    batch = doc["components"]["schemas"]["BatchRequest"]["properties"]["instances"]
    assert batch["maxItems"] == MAX_BATCH
    assert doc["paths"]["/v1/models/{name}/predict"]["post"]["parameters"][0]["schema"]["enum"] == \
        ["mnist", "fashion-mnist"]
    assert "return_input" in doc["components"]["schemas"]["SingleRequest"]["properties"]
    assert "input_image" in doc["components"]["schemas"]["SinglePrediction"]["properties"]
    assert "security" not in doc  # auth off in this app


def test_document_with_auth_is_valid_too(tmp_path):
    config = Config(model_dir=tmp_path, api_keys=("x" * 16,), max_batch=3)
    d = openapi_document(config)
    validate(d)
    assert d["security"] == [{"ApiKey": []}, {"Bearer": []}]
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert d["paths"][path]["get"]["security"] == []


def test_success_responses_match_schemas(client, doc):
    png = (SAMPLES / "mnist" / "2-2.png").read_bytes()
    check(doc, "/healthz", "get", client.get("/healthz"))
    check(doc, "/readyz", "get", client.get("/readyz"))
    check(doc, "/v1/models", "get", client.get("/v1/models"))
    check(doc, "/v1/models/{name}", "get", client.get("/v1/models/fashion-mnist"))
    for body in ({"base64": b64(png)}, {"base64": b64(png), "return_input": True},
                 {"instances": [{"base64": b64(png)}] * 3},
                 {"instances": [{"base64": b64(png)}], "return_input": True}):
        for path, url in (("/predict", "/predict"), ("/v1/models/{name}/predict", "/v1/models/fashion-mnist/predict")):
            resp = client.post(url, json=body)
            assert resp.status_code == 200
            check(doc, path, "post", resp)
    # The schema really constrains: a wrong shape is rejected by it.
    validator = response_schema(doc, "/predict", "post", 200)
    assert not validator.is_valid({"model": "mnist", "model_version": "1", "label": "1", "class_index": 1,
                                   "confidence": 0.5, "probabilities": [0.1] * 9})


@pytest.mark.parametrize("method, path, url_path, body, headers", [
    ("post", "/predict", "/predict", b"{", {"Content-Type": "application/json"}),
    ("post", "/predict", "/predict", b'{"base64": "!!"}', {"Content-Type": "application/json"}),
    ("post", "/predict", "/predict", json.dumps({"base64": b64(b"nope")}).encode(),
     {"Content-Type": "application/json"}),
    ("post", "/predict", "/predict", b"{}", {"Content-Type": "text/plain"}),
    ("post", "/v1/models/{name}/predict", "/v1/models/nope/predict", b"{}", {"Content-Type": "application/json"}),
    ("post", "/v1/models/{name}/predict", "/v1/models/mnist/predict",
     json.dumps({"instances": [{"base64": "AAAA"}] * (MAX_BATCH + 1)}).encode(), {"Content-Type": "application/json"}),
    ("get", "/v1/models/{name}", "/v1/models/nope", None, {}),
])
def test_error_responses_match_schemas(client, doc, method, path, url_path, body, headers):
    resp = client.open(url_path, method=method.upper(), data=body, headers=headers)
    assert str(resp.status_code) in doc["paths"][path][method]["responses"]  # the status is documented
    check(doc, path, method, resp)
    code = resp.json["error"]["code"]
    assert 400 <= resp.status_code < 500 and ERROR_CODES[code] == resp.status_code, resp.json
    assert code in doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
