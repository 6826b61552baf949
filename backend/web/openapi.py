"""The OpenAPI 3.1 description served at ``/openapi.json``.

Built in code rather than kept as a static file so the documented limits (batch size, body size,
pixels), the model-name enum and the auth requirement are the running server's real values.
Tests validate the document and check live responses against these schemas.
"""

from __future__ import annotations

from backend.config import Config
from backend.contract import (
    BATCH_TOO_LARGE,
    BODY_TOO_LARGE,
    ERROR_CODES,
    IMAGE_TOO_LARGE,
    INTERNAL_ERROR,
    INVALID_JSON,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    MODEL_NOT_FOUND,
    NOT_READY,
    OVERLOADED,
    PREPROCESSING_MODES,
    UNAUTHORIZED,
    UNSUPPORTED_IMAGE,
    __version__,
)
from backend.web import openapi_protocols as protocols

REF = "#/components/schemas/"

# samples/mnist/1-1.png (a "1"): the document's examples are real requests that succeed.
EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAiUlEQVR42mNgoD9gRhdQe/3uFIzNhC5p+O8pbqPaP+KW0/0yDcFBN"
               "1adayVunafuc+OUU/h3gwGnsfYMr3FL6jJ04TTV8u1ZDpw6nYVu/MApqf9/DU5TJV5cR+Gj6EwQO4FbUp7hPe7gefLPCadOW3E8"
               "Ed/77ywzLp1cXgxr/uLSyHpsAxfDgAMAUBMg+xetJ/UAAAAASUVORK5CYII=")
# Base64 text that decodes (standard or URL-safe alphabet, padding optional). The server is more
# lenient (data: URLs, line breaks: see the description), but whatever this matches decodes, so a
# schema-valid string is never refused as bad base64 — only as "not an image" (422).
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$"


def _error_response(description: str, *codes: str) -> dict:
    return {"description": f"{description} (`error.code`: {', '.join(f'`{c}`' for c in codes)})",
            "content": {"application/json": {"schema": {"$ref": REF + "Error"}}}}


def _json(schema_name: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF + schema_name}}}}


def verdict_fields() -> dict:
    """The class and the out-of-distribution verdict, shared by predictions and explanations."""
    return {
        "label": {"type": ["string", "null"], "examples": ["7"],
                  "description": "Class name from the model card; null when strict mode abstains (the image "
                                 "is out of distribution)."},
        "class_index": {"type": ["integer", "null"], "minimum": 0, "maximum": 9,
                        "description": "Index of `label` in the card's labels; null when `label` is."},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                       "description": "Probability of the most probable class (also when `label` is null). "
                                      "Not a verdict: noise can score 1.0; see `in_distribution`."},
        "in_distribution": {"type": "boolean",
                            "description": "Whether the image looks like the model's training data: "
                                           "`ood_score` ≤ the threshold in the model card (fixed at export "
                                           "on held-out data). false: the label is a guess about something "
                                           "that is not, e.g., a handwritten digit."},
        "ood_score": {"type": "number",
                      "description": "How unusual the image is for this model (higher = more unusual); its "
                                     "scale depends on the card's `ood.method`."},
        "reason": {"type": "string",
                   "description": "Only when `in_distribution` is false: why, in words (\"this does not look "
                                  "like a handwritten digit ...\")."},
    }


def strict_field(default: bool) -> dict:
    return {"type": "boolean",
            "description": "Abstain on an out-of-distribution image: `label` and `class_index` null plus a "
                           "`reason` (still 200, probabilities kept). Omitted: the server's default "
                           f"(VISION_OOD_STRICT, here {str(default).lower()}); `?strict=` overrides both."}


def strict_query(default: bool) -> dict:
    return {"name": "strict", "in": "query", "required": False, "schema": {"type": "boolean"},
            "description": "Strict mode for this request (see the body's `strict`); `?strict` alone means true. "
                           f"Server default (VISION_OOD_STRICT): {str(default).lower()}."}


def openapi_document(config: Config) -> dict:
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    prediction_fields = {
        **verdict_fields(),
        "probabilities": {"type": "array", "items": probability, "minItems": 10, "maxItems": 10,
                          "description": "Probability per class (index = class_index); sums to 1."},
        "input_image": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png",
                        "description": "Only with `return_input: true`: the 28×28 grayscale PNG exactly as "
                                       "the model sees it (after preprocessing, before normalisation)."},
    }
    prediction_required = ["label", "class_index", "confidence", "probabilities", "in_distribution", "ood_score"]
    image_string = {
        "type": "string", "minLength": 2, "pattern": BASE64_PATTERN,
        "description": "The image (PNG, JPEG, WebP, BMP, GIF or TIFF; any size up to the pixel limit), "
                       "base64-encoded. Accepted: a `data:image/...;base64,` prefix, line breaks, the URL-safe "
                       "alphabet and missing `=` padding. Animated images use their first frame; EXIF "
                       "orientation is applied.",
    }
    return_input = {"type": "boolean", "default": False,
                    "description": "Also return `input_image`, the preprocessed 28×28 model input."}
    strict = strict_field(config.ood_strict)
    model_names = list(config.models)

    schemas = {
        "SingleRequest": {
            "type": "object", "required": ["base64"],
            "properties": {"base64": image_string, "return_input": return_input, "strict": strict},
        },
        "BatchRequest": {
            "type": "object", "required": ["instances"],
            "properties": {
                "instances": {"type": "array", "minItems": 1, "maxItems": config.max_batch,
                              "description": f"Up to {config.max_batch} images (VISION_MAX_BATCH); more is a 413.",
                              "items": {"type": "object", "required": ["base64"],
                                        "properties": {"base64": image_string}}},
                "return_input": return_input,
                "strict": strict,
            },
        },
        "Prediction": {"type": "object", "required": prediction_required, "properties": prediction_fields,
                       "additionalProperties": False},
        "SinglePrediction": {
            "type": "object", "required": ["model", "model_version", *prediction_required],
            "properties": {"model": {"type": "string", "enum": model_names},
                           "model_version": {"type": "string"}, **prediction_fields},
            "additionalProperties": False,
        },
        "BatchPrediction": {
            "type": "object", "required": ["model", "model_version", "predictions"],
            "properties": {"model": {"type": "string", "enum": model_names},
                           "model_version": {"type": "string"},
                           "predictions": {"type": "array", "items": {"$ref": REF + "Prediction"}}},
            "additionalProperties": False,
        },
        "ModelSummary": {
            "type": "object",
            "required": ["name", "version", "description", "labels", "test_accuracy", "input"],
            "properties": {
                "name": {"type": "string", "enum": model_names},
                "version": {"type": "string"},
                "description": {"type": "string"},
                "labels": {"type": "array", "items": {"type": "string"}, "minItems": 10, "maxItems": 10},
                "test_accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "input": {"type": "object", "required": ["shape", "preprocessing"],
                          "description": "Input spec from the model card.",
                          "properties": {"preprocessing": {"enum": list(PREPROCESSING_MODES)},
                                         "shape": {"type": "array"}}},
            },
        },
        "ModelDetail": {
            "allOf": [{"$ref": REF + "ModelSummary"}],
            "type": "object",
            "required": ["per_class_accuracy", "normalization", "ood"],
            "properties": {
                "per_class_accuracy": {"type": ["object", "null"],
                                       "additionalProperties": {"type": "number"}},
                "test_samples": {"type": ["integer", "null"]},
                "output": {"type": ["object", "null"]},
                "ood": {"type": "object", "required": ["method", "threshold", "baseline"],
                        "description": "The out-of-distribution verdict: `method`, `threshold` (in_distribution = "
                                       "ood_score ≤ threshold), `baseline` (ood_share, class_share: what the "
                                       "drift alerts compare with) and the held-out `evaluation`.",
                        "properties": {"method": {"type": "string"}, "threshold": {"type": "number"},
                                       "baseline": {"type": "object"}}},
                "normalization": {"type": "object", "required": ["mean", "std"],
                                  "properties": {"mean": {"type": "number"}, "std": {"type": "number"}}},
                "created": {"type": ["string", "null"]},
                "artifacts": {"type": ["object", "null"]},
            },
        },
        "VersionList": {
            "type": "object", "required": ["name", "stable", "release", "versions", "decisions", "history"],
            "description": "Every known version of a served name, its role and gate result; the running release "
                           "(candidate, canary weight or shadow, policy, the judge's live figures); the latest "
                           "decisions of the audit history (docs/releases.md).",
            "properties": {
                "name": {"type": "string"}, "stable": {"type": "string"},
                "release": {"type": ["object", "null"]},
                "versions": {"type": "array", "items": {
                    "type": "object", "required": ["version", "role", "served", "gate"],
                    "properties": {"version": {"type": "string"},
                                   "role": {"enum": ["stable", "candidate", "retired", "refused"]},
                                   "served": {"type": "boolean"}, "gate": {"type": ["object", "null"]}}}},
                "decisions": {"type": "object", "additionalProperties": {"type": "integer"}},
                "history": {"type": "array", "items": {"type": "object", "required": ["at", "actor", "action"]}},
            },
        },
        "ModelList": {"type": "object", "required": ["models"],
                      "properties": {"models": {"type": "array", "items": {"$ref": REF + "ModelSummary"}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": {"type": "object", "required": ["status", "models"],
                  "properties": {"status": {"const": "ready"},
                                 "models": {"type": "object", "additionalProperties": {"type": "string"},
                                            "description": "Loaded model name → version."}}},
        "Error": {
            "type": "object", "required": ["error"], "additionalProperties": False,
            "properties": {"error": {
                "type": "object", "required": ["code", "message"], "additionalProperties": False,
                "properties": {"code": {"type": "string", "enum": sorted(ERROR_CODES)},
                               "message": {"type": "string", "description": "Human-readable; says how to fix it."}},
            }},
        },
    }

    request_id_header = {"X-Request-ID": {
        "description": "Echo of the request's X-Request-ID when it is safe (≤128 chars of [A-Za-z0-9._:@/+=-]), "
                       "else a generated id; also in the access log line.",
        "schema": {"type": "string"}}}
    auth = [{"ApiKey": []}, {"Bearer": []}] if config.auth_enabled else []
    common_errors = {
        "401": _error_response("Missing or wrong API key (only when VISION_API_KEYS is set)", UNAUTHORIZED),
        "503": _error_response("Models still loading, the server shutting down, or a budget used up (then with "
                               "Retry-After: too many requests queued, large uploads or explanations at once)",
                               NOT_READY, OVERLOADED),
        "500": _error_response("A bug in the server (never caused by bad input)", INTERNAL_ERROR),
    }
    predict_errors = {
        "400": _error_response("Invalid JSON, a missing or wrong-typed field, or undecodable base64",
                               INVALID_JSON, INVALID_REQUEST, "invalid_base64"),
        "404": _error_response("Unknown model", MODEL_NOT_FOUND),
        "405": _error_response("Method other than POST", METHOD_NOT_ALLOWED),
        "413": _error_response(f"Body over {config.max_body_bytes} bytes (VISION_MAX_BODY_BYTES), image over "
                               f"{config.max_pixels} pixels (VISION_MAX_PIXELS, checked before decoding) or more "
                               f"than {config.max_batch} instances", BODY_TOO_LARGE, IMAGE_TOO_LARGE,
                               BATCH_TOO_LARGE),
        "422": _error_response("The bytes are not a complete image in a supported format", UNSUPPORTED_IMAGE),
        **common_errors,
    }

    version_param = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "A served version (stable or a gated candidate; GET .../versions lists them)"}

    def predict_op(op_id: str, summary: str, with_name: bool, with_version: bool = False) -> dict:
        op = {
            "operationId": op_id, "summary": summary, "tags": ["predict"],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"oneOf": [{"$ref": REF + "SingleRequest"}, {"$ref": REF + "BatchRequest"}]},
                "examples": {"single": {"value": {"base64": EXAMPLE_PNG}},
                             "batch": {"value": {"instances": [{"base64": EXAMPLE_PNG}, {"base64": EXAMPLE_PNG}]}}},
            }, **protocols.raw_image_content()}},
            "responses": {
                "200": {"description": "Prediction (single) or predictions in request order (batch)",
                        "headers": request_id_header,
                        "content": {"application/json": {"schema": {"oneOf": [
                            {"$ref": REF + "SinglePrediction"}, {"$ref": REF + "BatchPrediction"}]}}}},
                **predict_errors,
            },
        }
        op["parameters"] = [strict_query(config.ood_strict)]
        if with_name:
            op["parameters"].insert(0, {"name": "name", "in": "path", "required": True,
                                        "schema": {"type": "string", "enum": model_names}})
        if with_version:
            op["parameters"].insert(1, version_param)
        return op

    def get_op(op_id: str, summary: str, schema: str, errors: dict, open_: bool = False, **extra) -> dict:
        op = {"operationId": op_id, "summary": summary,
              "responses": {"200": {**_json(schema, "OK"), "headers": request_id_header}, **errors}, **extra}
        if open_:
            op["security"] = []
        return op

    name_param = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    paths = {
        "/predict": {"post": predict_op("predictMnist", "Classify a handwritten digit (the mnist model)", False)},
        "/v1/models/{name}/predict": {"post": predict_op("predict", "Classify with the named model", True)},
        "/v1/models/{name}/versions": {"get": get_op(
            "listVersions", "Versions of a model: roles, gate results, the running release", "VersionList",
            {"404": _error_response("Unknown model", MODEL_NOT_FOUND), **common_errors},
            tags=["models"], parameters=name_param)},
        "/v1/models/{name}/versions/{version}/predict": {"post": predict_op(
            "predictVersion", "Classify with one version of the named model (stable or a gated candidate)",
            True, True)},
        "/v1/models": {"get": get_op("listModels", "Loaded models", "ModelList", common_errors, tags=["models"])},
        "/v1/models/{name}": {"get": get_op(
            "getModel", "One model's card: labels, version, accuracy, input spec", "ModelDetail",
            {"404": _error_response("Unknown model", MODEL_NOT_FOUND), **common_errors},
            tags=["models"], parameters=name_param)},
        "/healthz": {"get": get_op("healthz", "Liveness (the process serves HTTP)", "Health", {}, open_=True,
                                   tags=["operations"])},
        "/readyz": {"get": get_op("readyz", "Readiness: 200 once every model is loaded and warmed up", "Ready",
                                  {"503": common_errors["503"]}, open_=True, tags=["operations"])},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "tags": ["operations"],
                                  "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                        "content": {"application/json": {
                                                            "schema": {"type": "object"}}}}}}},
    }

    paths.update(protocols.paths(model_names, predict_errors, common_errors, strict_query(config.ood_strict)))
    schemas.update(protocols.schemas(model_names, verdict_fields()))

    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "Vision AI",
            "version": __version__,
            "description": "MNIST / Fashion-MNIST image classification. Every error is JSON "
                           "`{\"error\": {\"code\", \"message\"}}`; `code` values are stable. "
                           "Unknown routes answer 404 `not_found`. Prometheus metrics are not part of this API: they "
                           "are served on the operator's metrics port (VISION_METRICS_PORT). The `/v2` routes "
                           "follow the Open Inference Protocol instead: errors there are `{\"error\": \"...\"}`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
    if auth:
        doc["security"] = auth
    return doc
