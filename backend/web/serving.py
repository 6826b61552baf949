"""The inference pipeline (``backend.serving.pipeline``) as the blueprints reach it: its stages bound
to the current Flask request, and the steps predict and explain share.

Not a blueprint: the predicting blueprints (``api``, ``v2``, ``explain``) import this, never each other.
"""

from __future__ import annotations

import numpy as np
from flask import g, request

from backend.errors import ApiError
from backend.model import verdict
from backend.model.inference import Model
from backend.serving.pipeline import Call, Pipeline
from backend.web.bodies import Body, read_body
from backend.web.state import get_state


def pipeline() -> Pipeline:
    return get_state().pipeline


def current_call() -> Call:
    """The current request as the pipeline needs it: its deadline, whether its client is still there,
    its headers (the release router's client key)."""
    return Call(deadline=g.start + get_state().config.request_deadline,
                client_gone=request.environ.get("waitress.client_disconnected"), headers=request.headers)


def load(name: str, version: str | None = None) -> Model:
    """Load stage: the model (or the ``version`` of it) the request names — one lookup, one error."""
    pipe = pipeline()
    try:
        model = pipe.load(name, version)
    except ApiError:
        if version is not None and name in pipe.registry.models:
            g.model = name  # a version of a served model is not: counted under that model
        raise
    g.model = name  # a served model's name: safe as a metrics label
    return model


def prepared_inputs(name: str, version: str | None = None) -> tuple[Model, Body, np.ndarray, Call]:
    """Load the model, parse the body (any accepted form) and preprocess every image → (N, 28, 28).

    Shared by predict and explain so both have the same body forms, limits, errors and metrics."""
    model = load(name, version)
    body = read_body(get_state().config.max_batch)
    call = current_call()
    where = (lambda i: f"instances[{i}]") if body.is_batch else None  # say which image is wrong
    return model, body, pipeline().preprocess(name, model, body.images, call, where), call


def request_strict(body: Body) -> bool:
    """Strict mode of the current request (``?strict=``, the body's ``strict``, ``VISION_OOD_STRICT``)."""
    # No query string (nearly every request): skip building request.args (~15 µs).
    query = request.args.get("strict") if request.environ.get("QUERY_STRING") else None
    return verdict.is_strict(query, body.strict, get_state().config.ood_strict)
