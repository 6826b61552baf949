"""Open Inference Protocol v2 (REST) — the protocol KServe, Triton and Seldon share — so standard
clients such as ``tritonclient[http]`` can call the models.

Each model takes one input, either
* ``FP32 [N, 1, 28, 28]`` — the model's own normalised input ((pixel − mean) / std), or
* ``BYTES [N]`` — encoded image files (PNG, JPEG...), run through the same decoding and
  preprocessing as ``/predict`` (and the same pixel limit),
and returns ``probabilities`` ``FP32 [N, 10]`` with the verdict beside it: ``ood_score`` ``FP32 [N]``
(higher = more unusual) and ``in_distribution`` ``BOOL [N]`` (the score is within the model card's
threshold). A request's ``outputs`` list picks which of the three come back (all when absent, as the
protocol says); an unknown name is a 400 before anything runs. Inputs may use the binary tensor
extension (``Inference-Header-Content-Length``), which tritonclient uses by default; outputs are
always JSON, which every client reads. A body that is itself an image file (``image/*``, or
``application/octet-stream`` without that header) is ``BYTES [1]``, as on ``/predict``.
Errors use the protocol's ``{"error": "..."}`` shape.
"""

from __future__ import annotations

import struct

import numpy as np
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import HTTPException

from backend.contract import BATCH_TOO_LARGE, INVALID_REQUEST
from backend.errors import ApiError
from backend.model import verdict
from backend.model.card import IMAGE_SIDE
from backend.model.decoding import decode_base64
from backend.model.inference import Model
from backend.protection.policy import framework_code
from backend.serving.pipeline import Call
from backend.web.bodies import JsonShape, load_json
from backend.web.responses import json_response
from backend.web.serving import current_call, load, pipeline
from backend.web.state import get_state

bp = Blueprint("v2", __name__, url_prefix="/v2")

INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
OOD_OUTPUT, VERDICT_OUTPUT = "ood_score", "in_distribution"
OUTPUTS = (OUTPUT_NAME, OOD_OUTPUT, VERDICT_OUTPUT)
PLATFORM = "onnxruntime_onnx"
HEADER_LENGTH = "Inference-Header-Content-Length"


# The protocol's error shape; the code still reaches the access log and metrics (backend.web.app).
@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    g.error = (exc.code, exc.shed)
    return json_response({"error": exc.message}, exc.status, exc.headers)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    g.error = (framework_code(exc.code or 500), None)
    return json_response({"error": exc.description or exc.name}, exc.code or 500)


@bp.get("")
def server_metadata():
    from backend.web.openapi import openapi_document

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
    model = load(name)
    return json_response({
        "name": name, "versions": [model.card.version], "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 1, IMAGE_SIDE, IMAGE_SIDE]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(model.card.labels)]},
                    {"name": OOD_OUTPUT, "datatype": "FP32", "shape": [-1]},
                    {"name": VERDICT_OUTPUT, "datatype": "BOOL", "shape": [-1]}],
        "parameters": {"labels": list(model.card.labels),
                       "bytes_input": "a BYTES [N] input of encoded image files is accepted as well"}})


@bp.get("/models/<name>/ready")
def model_ready(name: str):
    load(name)
    return Response(status=200 if get_state().ready else 503)


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    """load → preprocess → predict → postprocess (``backend.serving.pipeline``), answered as tensors."""
    state = get_state()
    model = load(name, version)  # 404 before the body is read
    call = current_call()
    mimetype = request.mimetype
    if request.headers.get(HEADER_LENGTH) is None and (mimetype == "application/octet-stream"
                                                       or mimetype.startswith("image/")):
        # The body is one encoded image file: BYTES [1] without the JSON around it (as /predict).
        header, images = {}, _encoded_images(name, [request.get_data(cache=False)], model, call)
        wanted = OUTPUTS
    else:
        header, binary = _split_body()
        wanted = _requested_outputs(header)  # checked before the images cost anything
        images = _images(name, _single_input(header), binary, model, state.config, call)
    pipe = pipeline()
    prediction, model = pipe.predict(name, images, call, version)  # stable, canary or `version`
    pipe.postprocess(name, model, prediction, strict=False)  # the same verdicts and drift series as /predict
    probs, scores, verdicts = prediction.probs, prediction.ood_score, prediction.in_distribution
    tensors = [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": list(probs.shape),
                "data": probs.astype(np.float32).ravel().tolist()},
               {"name": OOD_OUTPUT, "datatype": "FP32", "shape": [len(scores)],
                "data": [verdict.score_value(s) for s in scores]},
               {"name": VERDICT_OUTPUT, "datatype": "BOOL", "shape": [len(verdicts)], "data": verdicts.tolist()}]
    body = {"model_name": name, "model_version": model.card.version,
            "outputs": [t for t in tensors if t["name"] in wanted]}
    if isinstance(header.get("id"), str):
        body["id"] = header["id"]
    return json_response(body)


# ---------------------------------------------------------------------------------------------


USAGE = 'send a JSON inference request {"inputs": [{"name": "input", "datatype": ..., "shape": ..., "data": ...}]}'


def json_shape(max_batch: int) -> JsonShape:
    """The most structure a valid inference request has: FP32 data nested as [N][1][28][28] is
    2 + 30·N arrays and 784·N numbers; the rest (inputs, parameters, outputs, id) is a few dozen."""
    return JsonShape(containers=32 * max_batch + 64, items=IMAGE_SIDE * IMAGE_SIDE * max_batch + 64, usage=USAGE)


def _requested_outputs(header: dict) -> tuple[str, ...]:
    """The outputs the request names, in the model's order (every output when it names none)."""
    requested = header.get("outputs")
    if requested is None:
        return OUTPUTS
    if not isinstance(requested, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                  for o in requested):
        raise ApiError("'outputs' must be an array of objects with a 'name'")
    names = {o["name"] for o in requested}
    unknown = sorted(names - set(OUTPUTS))
    if unknown:
        raise ApiError(f"unknown output {unknown[0][:40]!r}; this model has {', '.join(OUTPUTS)}")
    return tuple(out for out in OUTPUTS if out in names)


def _split_body() -> tuple[dict, bytes]:
    raw = request.get_data(cache=False)  # MAX_CONTENT_LENGTH applies (413)
    length = request.headers.get(HEADER_LENGTH)
    if length is not None:
        # ASCII digits only: str.isdigit() is also true for "²" or "٣", which int() refuses.
        if not (length.isascii() and length.isdigit() and len(length) <= 12) or int(length) > len(raw):
            raise ApiError(f"{HEADER_LENGTH} must be an integer ≤ the body length ({len(raw)})")
        raw, binary = raw[: int(length)], raw[int(length):]
    else:
        binary = b""
    header = load_json(raw, json_shape(get_state().config.max_batch))
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


def _images(name: str, spec: dict, binary: bytes, model: Model, config, call: Call) -> np.ndarray:
    shape, datatype = spec["shape"], spec["datatype"]
    n = shape[0] if shape else 0
    if not 1 <= n <= config.max_batch:
        raise ApiError(f"batch size must be 1..{config.max_batch} (VISION_MAX_BATCH), got {n}",
                       code=BATCH_TOO_LARGE if n > config.max_batch else INVALID_REQUEST)
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
        # The batcher takes [0, 1] pixels and normalises them; the pipeline undoes the client's normalisation.
        return pipeline().preprocess_tensor(name, model, x.reshape(n, IMAGE_SIDE, IMAGE_SIDE))
    if shape != [n]:
        raise ApiError(f"BYTES input must have shape [N] (one encoded image per element), got {shape}")
    files = _bytes_elements(binary, n) if size is not None else _json_bytes(spec.get("data"), n)
    return _encoded_images(name, files, model, call)


def _encoded_images(name: str, files: list[bytes], model: Model, call: Call) -> np.ndarray:
    return pipeline().preprocess(name, model, files, call, where=lambda i: f"image {i}")  # as /predict


def _json_numbers(data, count: int) -> np.ndarray:
    if not isinstance(data, list):
        raise ApiError("input 'data' must be an array of numbers")
    try:
        x = np.asarray(data, dtype=np.float32).ravel()
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range
        raise ApiError("input 'data' must contain only numbers") from None
    if x.size != count:
        raise ApiError(f"input 'data' has {x.size} numbers; the shape needs {count}")
    return x


def _json_bytes(data, n: int) -> list[bytes]:
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], list):
        data = data[0]
    if not isinstance(data, list) or len(data) != n or not all(isinstance(d, str) for d in data):
        raise ApiError(f"BYTES input 'data' must be an array of {n} strings (base64 of each image file)")
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
