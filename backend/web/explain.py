"""POST /v1/models/{name}/explain: occlusion sensitivity of one image (``backend.model.occlusion``) —
which parts of the 28×28 input the prediction depends on — with a PNG overlay.

The request goes through the same input pipeline as predict (``backend.web.api.prepared_inputs``), so
both have the same body forms, limits and errors.
"""

from __future__ import annotations

import base64
import time

import numpy as np
from flask import Blueprint

from backend.contract import INVALID_REQUEST
from backend.errors import ApiError
from backend.model import verdict
from backend.model.occlusion import STRIDE, WINDOW, attributions, occlusion_batch, overlay_png
from backend.web.api import prepared_inputs, request_strict
from backend.web.responses import json_response
from backend.web.state import get_state

bp = Blueprint("explain", __name__)


@bp.post("/v1/models/<name>/explain")
def explain(name: str):
    state = get_state()
    with state.explain.running():  # its own concurrency and CPU budget (backend.protection.admission)
        return _explain(state, name)


def _explain(state, name: str):
    model, body, images = prepared_inputs(name)
    if body.is_batch:
        raise ApiError("explain takes one image: send {\"base64\": ...}, not 'instances'", code=INVALID_REQUEST)
    strict = request_strict(body)
    start = time.perf_counter()
    # In this thread, not through the batcher: predictions must not queue behind 145 occluded rows.
    prediction = model.run(occlusion_batch(images[0]))  # row 0 is the image itself
    seconds = time.perf_counter() - start
    state.metrics.inference_by[(name,)].observe(seconds)
    probs = prediction.probs
    index = int(probs[0].argmax())
    attr = attributions(probs, index)
    return json_response({
        "model": name, "model_version": model.card.version,
        **verdict.fields(name, model.card.labels, index, probs[0], prediction.ood_score[0],
                         prediction.in_distribution[0], model.card.ood.threshold, strict),
        "method": "occlusion", "window": WINDOW, "stride": STRIDE,
        "attributions": np.round(attr, 6).tolist(),
        "overlay": base64.b64encode(overlay_png(images[0], attr)).decode("ascii")})
