"""HTTP routes. The contract (paths, fields, status codes) is fixed in issue 3 and /openapi.json.

Request handling is deliberately strict about *structure* (clear 4xx for every mistake) and
lenient about *content* (any common image format, size, base64 dialect).
"""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
from flask import Blueprint, Response, g, request
from PIL import Image

from backend.app import get_state, json_response
from backend.decoding import decode_base64, open_image
from backend.errors import ApiError
from backend.inference import Model
from backend.preprocessing import preprocess
from backend.contract import DEFAULT_MODEL

bp = Blueprint("api", __name__)

USAGE = 'send {"base64": "<base64-encoded image>"} with Content-Type: application/json'


@bp.get("/healthz")
def healthz():
    """Liveness: the process serves HTTP. Deliberately independent of the models."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz():
    state = get_state()
    if state.draining.is_set():
        raise ApiError("shutting down", status=503, code="not_ready")
    if not state.registry.ready.is_set():
        raise ApiError(state.registry.error or "models are still loading", status=503, code="not_ready")
    return json_response({"status": "ready",
                          "models": {n: m.card.version for n, m in state.registry.models.items()}})


@bp.get("/metrics")
def metrics():
    body, content_type = get_state().metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    from backend.openapi import openapi_document

    state = get_state()
    return json_response(openapi_document(state.config))


@bp.get("/v1/models")
def list_models():
    registry = _ready_registry()
    return json_response({"models": [m.card.summary() for m in registry.models.values()]})


@bp.get("/v1/models/<name>")
def model_detail(name: str):
    return json_response(_model(name).card.detail())


@bp.post("/predict")
def predict_default():
    """The MNIST endpoint of the assignment: same body as /v1/models/mnist/predict."""
    return _predict(DEFAULT_MODEL)


@bp.post("/v1/models/<name>/predict")
def predict_named(name: str):
    return _predict(name)


# ---------------------------------------------------------------------------------------------


def _ready_registry():
    registry = get_state().registry
    if not registry.ready.is_set():
        raise ApiError(registry.error or "models are still loading; retry shortly", status=503,
                       code="not_ready", headers={"Retry-After": "1"})
    return registry


def _model(name: str) -> Model:
    registry = _ready_registry()
    model = registry.get(name)
    if model is None:
        raise ApiError(f"unknown model {name!r}; available: {', '.join(registry.models) or 'none'}",
                       status=404, code="model_not_found")
    g.model = name  # a loaded model's name: safe as a metrics label
    return model


def _read_json() -> object:
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        got = request.content_type or "none"
        raise ApiError(f"Content-Type must be application/json (got {got}); with curl add "
                       "-H 'Content-Type: application/json'", status=415, code="unsupported_media_type")
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: werkzeug raises 413 here
    if not raw.strip():
        raise ApiError(f"request body is empty; {USAGE}", code="invalid_json")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(f"body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                       f"{USAGE} — the base64 value must be a quoted string", code="invalid_json") from None
    except UnicodeDecodeError:
        raise ApiError("body is not UTF-8 text; " + USAGE, code="invalid_json") from None
    except RecursionError:
        raise ApiError("JSON is nested too deeply; " + USAGE, code="invalid_json") from None


def _type_name(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def _parse_body(body, max_batch: int) -> tuple[list[str], bool, bool]:
    """→ (base64 strings, is_batch, return_input); raises ApiError 400/413 naming the bad field."""
    if not isinstance(body, dict):
        raise ApiError(f"body must be a JSON object, got {_type_name(body)}; {USAGE}", code="invalid_request")
    return_input = body.get("return_input", False)
    if not isinstance(return_input, bool):
        raise ApiError(f"'return_input' must be true or false, got {_type_name(return_input)}",
                       code="invalid_request")
    if "instances" in body:
        if "base64" in body:
            raise ApiError("send either 'base64' (one image) or 'instances' (a batch), not both",
                           code="invalid_request")
        instances = body["instances"]
        if not isinstance(instances, list):
            raise ApiError(f"'instances' must be an array of {{\"base64\": ...}} objects, got "
                           f"{_type_name(instances)}", code="invalid_request")
        if not instances:
            raise ApiError("'instances' is empty; send at least one image", code="invalid_request")
        if len(instances) > max_batch:
            raise ApiError(f"'instances' has {len(instances)} images; the maximum per request is {max_batch} "
                           "(VISION_MAX_BATCH)", status=413, code="batch_too_large")
        texts = []
        for i, item in enumerate(instances):
            if not isinstance(item, dict) or not isinstance(item.get("base64"), str):
                got = _type_name(item.get("base64")) if isinstance(item, dict) else _type_name(item)
                raise ApiError(f"instances[{i}] must be an object with a string 'base64' field (got {got})",
                               code="invalid_request")
            texts.append(item["base64"])
        return texts, True, return_input
    if "base64" not in body:
        raise ApiError(f"missing field 'base64'; {USAGE}", code="invalid_request")
    text = body["base64"]
    if not isinstance(text, str):
        raise ApiError(f"'base64' must be a string, got {_type_name(text)}; {USAGE}", code="invalid_request")
    return [text], False, return_input


def _prepare(text: str, model: Model, max_pixels: int) -> np.ndarray:
    img = open_image(decode_base64(text), max_pixels)
    return preprocess(img, model.card.preprocessing)


def _png_base64(image: np.ndarray) -> str:
    """The 28×28 model input as a PNG (what the model 'sees'; the frontend displays it)."""
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _predict(name: str):
    state = get_state()
    model = _model(name)
    texts, is_batch, return_input = _parse_body(_read_json(), state.config.max_batch)
    metrics = state.metrics

    images = []
    for i, text in enumerate(texts):
        start = time.perf_counter()
        try:
            images.append(_prepare(text, model, state.config.max_pixels))
        except ApiError as exc:
            if is_batch:  # say which image is wrong
                raise ApiError(f"instances[{i}]: {exc.message}", status=exc.status, code=exc.code) from None
            raise
        metrics.preprocessing.labels(name).observe(time.perf_counter() - start)

    batch = np.stack(images)
    start = time.perf_counter()
    probs = model.predict(batch)
    metrics.inference.labels(name).observe(time.perf_counter() - start)
    metrics.batch_size.labels(name).observe(len(images))

    labels = model.card.labels
    predictions = []
    for image, row in zip(images, probs):
        index = int(row.argmax())
        metrics.predictions.labels(name, labels[index]).inc()
        item = {"label": labels[index], "class_index": index, "confidence": float(row[index]),
                "probabilities": row.tolist()}
        if return_input:
            item["input_image"] = _png_base64(image)
        predictions.append(item)

    head = {"model": name, "model_version": model.card.version}
    if is_batch:
        return json_response({**head, "predictions": predictions})
    return json_response({**head, **predictions[0]})
