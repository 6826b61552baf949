"""POST /v1/models/{name}/explain: occlusion sensitivity of one image (``backend.model.occlusion``) —
which parts of the 28×28 input the prediction depends on — with a PNG overlay.

The request goes through the same pipeline as predict (``backend.serving.pipeline``: load and
preprocess via ``backend.web.serving.prepared_inputs``, then predict on the occluded copies and
postprocess the image's own row), so both have the same body forms, limits, errors and metrics.
"""

from __future__ import annotations

import base64

import numpy as np
from flask import Blueprint

from backend.contract import INVALID_REQUEST
from backend.errors import ApiError
from backend.model.occlusion import STRIDE, WINDOW, attributions, overlay_png
from backend.web.responses import json_response
from backend.web.serving import pipeline, prepared_inputs, request_strict
from backend.web.state import get_state

bp = Blueprint("explain", __name__)


@bp.post("/v1/models/<name>/explain")
def explain(name: str):
    state = get_state()
    with state.explain.running():  # its own concurrency and CPU budget (backend.protection.admission)
        return _explain(name)


def _explain(name: str):
    model, body, images, _ = prepared_inputs(name)
    if body.is_batch:
        raise ApiError("explain takes one image: send {\"base64\": ...}, not 'instances'", code=INVALID_REQUEST)
    strict = request_strict(body)
    pipe = pipeline()
    prediction = pipe.predict_occluded(name, model, images[0])  # row 0 is the image itself
    probs = prediction.probs
    (item,) = pipe.postprocess(name, model, prediction[0:1], strict)
    attr = attributions(probs, int(probs[0].argmax()))  # the most probable class, also when strict abstains
    return json_response({
        "model": name, "model_version": model.card.version, **item,
        "method": "occlusion", "window": WINDOW, "stride": STRIDE,
        "attributions": np.round(attr, 6).tolist(),
        "overlay": base64.b64encode(overlay_png(images[0], attr)).decode("ascii")})
