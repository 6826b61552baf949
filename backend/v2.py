"""Open Inference Protocol v2 (REST) — the protocol KServe, Triton and Seldon share — so standard
clients such as ``tritonclient[http]`` can call the models.

Each model takes one input, either
* ``FP32 [N, 1, 28, 28]`` — the model's own normalised input ((pixel − mean) / std), or
* ``BYTES [N]`` — encoded image files (PNG, JPEG...), run through the same decoding and
  preprocessing as ``/predict`` (and the same pixel limit),
and returns ``probabilities`` ``FP32 [N, 10]``. Inputs may use the binary tensor extension
(``Inference-Header-Content-Length``), which tritonclient uses by default; outputs are always JSON,
which every client reads. Errors use the protocol's ``{"error": "..."}`` shape.
"""

from __future__ import annotations

import json
import struct
import time

import numpy as np
from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from backend.api import prepare_image
from backend.errors import ApiError
from backend.inference import Model
from backend.modelcard import IMAGE_SIDE
from backend.responses import json_response
from backend.state import get_state

bp = Blueprint("v2", __name__, url_prefix="/v2")

INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
PLATFORM = "onnxruntime_onnx"
HEADER_LENGTH = "Inference-Header-Content-Length"


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return json_response({"error": exc.message}, exc.status, exc.headers)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return json_response({"error": exc.description or exc.name}, exc.code or 500)


@bp.get("")
def server_metadata():
    from backend.openapi import openapi_document

    info = openapi_document(get_state().config)["info"]
    return json_response({"name": "vision-ai", "version": info["version"], "extensions": ["binary_tensor_data"]})


@bp.get("/health/live")
def live():
    return Response(status=200)


@bp.get("/health/ready")
def ready():
    return Response(status=200 if get_state().ready else 503)


@bp.get("/models/<name>")
def model_metadata(name: str):
    model = _model(name)
    return json_response({
        "name": name, "versions": [model.card.version], "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 1, IMAGE_SIDE, IMAGE_SIDE]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(model.card.labels)]}],
        "parameters": {"labels": list(model.card.labels),
                       "bytes_input": "a BYTES [N] input of encoded image files is accepted as well"}})


@bp.get("/models/<name>/ready")
def model_ready(name: str):
    _model(name)
    return Response(status=200 if get_state().ready else 503)


@bp.post("/models/<name>/infer")
def infer(name: str):
    state = get_state()
    model = _model(name)
    header, binary = _split_body()
    spec = _single_input(header)
    start = time.perf_counter()
    images = _images(spec, binary, model, state.config)
    state.metrics.preprocessing_by[(name,)].observe(time.perf_counter() - start)
    start = time.perf_counter()
    probs = model.predict(images).probs
    state.metrics.inference_by[(name,)].observe(time.perf_counter() - start)
    state.metrics.batch_size_by[(name,)].observe(len(images))
    body = {"model_name": name, "model_version": model.card.version,
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": list(probs.shape),
                         "data": probs.astype(np.float32).ravel().tolist()}]}
    if isinstance(header.get("id"), str):
        body["id"] = header["id"]
    return json_response(body)


# ---------------------------------------------------------------------------------------------


def _model(name: str) -> Model:
    from flask import g

    registry = get_state().registry
    if not registry.ready.is_set():
        raise ApiError("models are still loading; retry shortly", status=503, headers={"Retry-After": "1"})
    model = registry.get(name)
    if model is None:
        raise ApiError(f"unknown model {name!r}; available: {', '.join(registry.models)}", status=404)
    g.model = name  # a loaded model's name: safe as a metrics label
    return model


def _split_body() -> tuple[dict, bytes]:
    raw = request.get_data(cache=False)  # MAX_CONTENT_LENGTH applies (413)
    length = request.headers.get(HEADER_LENGTH)
    if length is not None:
        if not length.isdigit() or int(length) > len(raw):
            raise ApiError(f"{HEADER_LENGTH} must be an integer ≤ the body length ({len(raw)})")
        raw, binary = raw[: int(length)], raw[int(length):]
    else:
        binary = b""
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError('body must be a JSON inference request {"inputs": [...]}') from None
    if not isinstance(header, dict):
        raise ApiError("inference request must be a JSON object")
    return header, binary


def _single_input(header: dict) -> dict:
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ApiError("'inputs' must be an array with exactly one tensor (FP32 [N,1,28,28] or BYTES [N])")
    spec = inputs[0]
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise ApiError("input 'shape' must be an array of non-negative integers")
    if spec.get("datatype") not in ("FP32", "BYTES"):
        raise ApiError(f"input datatype must be FP32 or BYTES, got {str(spec.get('datatype'))[:20]!r}")
    return spec


def _images(spec: dict, binary: bytes, model: Model, config) -> np.ndarray:
    shape, datatype = spec["shape"], spec["datatype"]
    n = shape[0] if shape else 0
    if not 1 <= n <= config.max_batch:
        raise ApiError(f"batch size must be 1..{config.max_batch} (VISION_MAX_BATCH), got {n}",
                       status=413 if n > config.max_batch else 400)
    params = spec.get("parameters") if isinstance(spec.get("parameters"), dict) else {}
    size = params.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size != len(binary)):
        raise ApiError("binary_data_size does not match the binary part of the body")
    if datatype == "FP32":
        if shape != [n, 1, IMAGE_SIDE, IMAGE_SIDE]:
            raise ApiError(f"FP32 input must have shape [N, 1, {IMAGE_SIDE}, {IMAGE_SIDE}], got {shape}")
        count = n * IMAGE_SIDE * IMAGE_SIDE
        if size is not None:
            if size != 4 * count:
                raise ApiError(f"binary FP32 data must be {4 * count} bytes, got {size}")
            x = np.frombuffer(binary, dtype="<f4")
        else:
            x = _json_numbers(spec.get("data"), count)
        if not np.isfinite(x).all():
            raise ApiError("FP32 input contains NaN or infinity")
        # The batcher takes [0, 1] pixels and normalises them; undo the client's normalisation.
        return (x.reshape(n, IMAGE_SIDE, IMAGE_SIDE) * np.float32(model.card.std)
                + np.float32(model.card.mean)).astype(np.float32)
    if shape != [n]:
        raise ApiError(f"BYTES input must have shape [N] (one encoded image per element), got {shape}")
    files = _bytes_elements(binary, n) if size is not None else _json_bytes(spec.get("data"), n)
    out = []
    for i, data in enumerate(files):
        try:
            out.append(prepare_image(data, model, config.max_pixels))  # same budgets as /predict
        except ApiError as exc:
            raise ApiError(f"image {i}: {exc.message}", status=exc.status) from None
    return np.stack(out)


def _json_numbers(data, count: int) -> np.ndarray:
    if not isinstance(data, list):
        raise ApiError("input 'data' must be an array of numbers")
    try:
        x = np.asarray(data, dtype=np.float32).ravel()
    except (TypeError, ValueError):
        raise ApiError("input 'data' must contain only numbers") from None
    if x.size != count:
        raise ApiError(f"input 'data' has {x.size} numbers; the shape needs {count}")
    return x


def _json_bytes(data, n: int) -> list[bytes]:
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], list):
        data = data[0]
    if not isinstance(data, list) or len(data) != n or not all(isinstance(d, str) for d in data):
        raise ApiError(f"BYTES input 'data' must be an array of {n} strings (base64 of each image file)")
    from backend.decoding import decode_base64

    return [decode_base64(d) for d in data]


def _bytes_elements(binary: bytes, n: int) -> list[bytes]:
    """Binary BYTES tensor: each element is a 4-byte little-endian length and then the bytes."""
    out, pos = [], 0
    while pos < len(binary):
        if pos + 4 > len(binary):
            raise ApiError("truncated BYTES tensor")
        (length,) = struct.unpack_from("<I", binary, pos)
        pos += 4
        if pos + length > len(binary):
            raise ApiError("truncated BYTES tensor")
        out.append(binary[pos: pos + length])
        pos += length
    if len(out) != n:
        raise ApiError(f"BYTES tensor holds {len(out)} elements; the shape says {n}")
    return out
