"""HTTP routes. The contract (paths, fields, status codes) is fixed by /openapi.json.

Request handling is deliberately strict about *structure* (clear 4xx for every mistake) and
lenient about *content* (any common image format, size, base64 dialect).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from flask import Blueprint
from PIL import Image

from backend.contract import DEFAULT_MODEL, LIVENESS_PATH, NOT_READY, READINESS_PATH
from backend.errors import ApiError
from backend.web.responses import json_response
from backend.web.serving import load, pipeline, prepared_inputs, request_strict
from backend.web.state import get_state

bp = Blueprint("api", __name__)


@bp.get(LIVENESS_PATH)
def healthz():
    """Liveness: the process serves HTTP. Deliberately independent of the models."""
    return json_response({"status": "ok"})


@bp.get(READINESS_PATH)
def readyz():
    state = get_state()
    if state.draining.is_set():
        raise ApiError("shutting down", code=NOT_READY)
    if not state.registry.ready.is_set():
        raise ApiError(state.registry.error or "models are still loading", code=NOT_READY)
    return json_response({"status": "ready",
                          "models": {n: m.card.version for n, m in state.registry.models.items()}})


@bp.get("/openapi.json")
def openapi():
    from backend.web.openapi import openapi_document

    state = get_state()
    return json_response(openapi_document(state.config))


@bp.get("/v1/models")
def list_models():
    registry = _ready_registry()
    return json_response({"models": [m.card.summary() for m in registry.models.values()]})


@bp.get("/v1/models/<name>")
def model_detail(name: str):
    return json_response(load(name).card.detail())


@bp.post("/predict")
def predict_default():
    """The MNIST endpoint of the assignment: same body as /v1/models/mnist/predict."""
    return _predict(DEFAULT_MODEL)


@bp.post("/v1/models/<name>/predict")
def predict_named(name: str):
    return _predict(name)


@bp.get("/v1/models/<name>/versions")
def model_versions(name: str):
    load(name)
    return json_response(get_state().releases.versions(name))


@bp.post("/v1/models/<name>/versions/<version>/predict")
def predict_version(name: str, version: str):
    return _predict(name, version)  # the version is looked up before the body is read


# ---------------------------------------------------------------------------------------------


def _ready_registry():
    registry = get_state().registry
    if not registry.ready.is_set():
        raise ApiError(registry.error or "models are still loading; retry shortly", code=NOT_READY,
                       headers={"Retry-After": "1"})
    return registry


def _png_base64(image: np.ndarray) -> str:
    """The 28×28 model input as a PNG (what the model 'sees'; the frontend displays it)."""
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _predict(name: str, version: str | None = None):
    """load → preprocess (``prepared_inputs``) → predict → postprocess, then the answer's shape."""
    pipe = pipeline()
    model, body, images, call = prepared_inputs(name, version)
    strict = request_strict(body)
    prediction, model = pipe.predict(name, images, call, version)
    predictions = pipe.postprocess(name, model, prediction, strict)
    if body.return_input:
        for item, image in zip(predictions, images, strict=True):
            item["input_image"] = _png_base64(image)
    head = {"model": name, "model_version": model.card.version}
    if body.is_batch:
        return json_response({**head, "predictions": predictions})
    return json_response({**head, **predictions[0]})
