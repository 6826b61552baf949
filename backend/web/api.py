"""HTTP routes. The contract (paths, fields, status codes) is fixed in issue 3 and /openapi.json.

Request handling is deliberately strict about *structure* (clear 4xx for every mistake) and
lenient about *content* (any common image format, size, base64 dialect).
"""

from __future__ import annotations

import base64
import io
import time
from contextlib import ExitStack

import numpy as np
from flask import Blueprint, g, request
from PIL import Image

from backend.contract import CLIENT_CLOSED_REQUEST, DEADLINE_EXCEEDED, DEFAULT_MODEL, MODEL_NOT_FOUND, NOT_READY
from backend.errors import ApiError, ImageTooLarge
from backend.model import verdict
from backend.model.decoding import decode_base64, open_image
from backend.model.inference import Model
from backend.model.preprocessing import preprocess
from backend.protection.budget import estimate
from backend.releases.manager import VersionNotServed
from backend.web.bodies import Body, read_body
from backend.web.responses import json_response
from backend.web.state import get_state

bp = Blueprint("api", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process serves HTTP. Deliberately independent of the models."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz():
    state = get_state()
    if state.draining.is_set():
        raise ApiError("shutting down", status=503, code=NOT_READY)
    if not state.registry.ready.is_set():
        raise ApiError(state.registry.error or "models are still loading", status=503, code=NOT_READY)
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
    return json_response(_model(name).card.detail())


@bp.post("/predict")
def predict_default():
    """The MNIST endpoint of the assignment: same body as /v1/models/mnist/predict."""
    return _predict(DEFAULT_MODEL)


@bp.post("/v1/models/<name>/predict")
def predict_named(name: str):
    return _predict(name)


@bp.get("/v1/models/<name>/versions")
def model_versions(name: str):
    _model(name)
    return json_response(get_state().releases.versions(name))


@bp.post("/v1/models/<name>/versions/<version>/predict")
def predict_version(name: str, version: str):
    served_version(name, version)  # before the body is read
    return _predict(name, version)


# ---------------------------------------------------------------------------------------------


def _ready_registry():
    registry = get_state().registry
    if not registry.ready.is_set():
        raise ApiError(registry.error or "models are still loading; retry shortly", status=503,
                       code=NOT_READY, headers={"Retry-After": "1"})
    return registry


def _model(name: str) -> Model:
    registry = _ready_registry()
    model = registry.get(name)
    if model is None:
        raise ApiError(f"unknown model {name!r}; available: {', '.join(registry.models) or 'none'}",
                       status=404, code=MODEL_NOT_FOUND)
    g.model = name  # a loaded model's name: safe as a metrics label
    return model


def served_version(name: str, version: str) -> Model:
    """The loaded ``version`` of ``name`` (stable or a gated candidate), else a 404."""
    _model(name)
    try:
        return get_state().releases.model_for(name, version)
    except VersionNotServed as exc:
        raise ApiError(str(exc), status=404, code=MODEL_NOT_FOUND) from None


def prepare_image(item: bytes | str, model: Model, max_pixels: int) -> np.ndarray:
    """Encoded image (bytes or base64 text) → the 28×28 model input, inside the memory and batch-pixel
    budgets of the current request."""
    state = get_state()
    data = item if isinstance(item, bytes) else decode_base64(item)

    def reserve(size: tuple[int, int], mode: str) -> None:
        # A batch costs at most what one image of the batch pixel limit costs, whatever its count.
        g.pixels = g.get("pixels", 0) + size[0] * size[1]
        if g.pixels > state.config.max_batch_pixels:
            raise ImageTooLarge(f"the images of this request have more than {state.config.max_batch_pixels} "
                                "pixels in all (VISION_MAX_BATCH_PIXELS); send fewer or smaller images")
        held.enter_context(state.memory.reserve(estimate(size, mode)))

    with ExitStack() as held:  # the reservation lasts until the image is reduced to 28×28
        return preprocess(open_image(data, max_pixels, reserve=reserve), model.card.preprocessing)


def prepared_inputs(name: str) -> tuple[Model, Body, np.ndarray]:
    """Resolve the model, parse the body (any accepted form) and preprocess every image → (N, 28, 28).

    Shared by predict and explain so both have the same limits, errors and preprocessing metrics."""
    state = get_state()
    model = _model(name)
    body = read_body(state.config.max_batch)
    images = []
    deadline = g.start + state.config.request_deadline
    client_gone = request.environ.get("waitress.client_disconnected")
    for i, item in enumerate(body.images):
        start = time.perf_counter()
        if i:  # between images: stop work nobody will read, or that ran past its deadline
            _check_still_wanted(client_gone, deadline, start)
        try:
            images.append(prepare_image(item, model, state.config.max_pixels))
        except ApiError as exc:
            if body.is_batch:  # say which image is wrong
                raise ApiError(f"instances[{i}]: {exc.message}", status=exc.status, code=exc.code) from None
            raise
        state.metrics.preprocessing_by[(name,)].observe(time.perf_counter() - start)
    return model, body, np.stack(images)


def _check_still_wanted(client_gone, deadline: float, now: float) -> None:
    if client_gone is not None and client_gone():
        raise ApiError("the client closed the connection; the rest of the batch was not processed",
                       status=499, code=CLIENT_CLOSED_REQUEST)
    if now > deadline:
        raise ApiError("the request ran past its deadline (VISION_REQUEST_DEADLINE); send fewer or smaller "
                       "images, or retry when the server is less busy", status=503, code=DEADLINE_EXCEEDED,
                       headers={"Retry-After": "1"})


def _png_base64(image: np.ndarray) -> str:
    """The 28×28 model input as a PNG (what the model 'sees'; the frontend displays it)."""
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _predict(name: str, version: str | None = None):
    state = get_state()
    model, body, batch = prepared_inputs(name)
    is_batch, return_input, images = body.is_batch, body.return_input, batch
    strict = request_strict(body)
    metrics = state.metrics
    start = time.perf_counter()
    # Stable, or the canary/requested version (backend.releases); the answer names it.
    prediction, model = state.releases.predict(name, batch, request.headers, version)
    metrics.inference_by[(name,)].observe(time.perf_counter() - start)
    metrics.batch_size_by[(name,)].observe(len(images))

    card = model.card
    labels, threshold = card.labels, card.ood.threshold
    predictions = []
    for image, row, score, ok in zip(images, prediction.probs, prediction.ood_score, prediction.in_distribution,
                                     strict=True):
        index = int(row.argmax())
        item = verdict.fields(name, labels, index, row, score, ok, threshold, strict)
        metrics.observe_prediction(name, labels[index], item["confidence"], item["in_distribution"],
                                   item["label"] is None)
        if return_input:
            item["input_image"] = _png_base64(image)
        predictions.append(item)

    head = {"model": name, "model_version": card.version}
    if is_batch:
        return json_response({**head, "predictions": predictions})
    return json_response({**head, **predictions[0]})


def request_strict(body: Body) -> bool:
    """Strict mode of the current request (``?strict=``, the body's ``strict``, ``VISION_OOD_STRICT``)."""
    return verdict.is_strict(request.args.get("strict"), body.strict, get_state().config.ood_strict)
