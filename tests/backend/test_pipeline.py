"""Every predicting route runs the one inference pipeline (``backend.serving.pipeline``): its stages in
order, each once, and each stage's metric recorded once — per image for preprocessing, per run for
inference — whichever route and body form the request uses."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
from repo import SAMPLES

from backend.serving.pipeline import Pipeline

MNIST = [p.read_bytes() for p in sorted((SAMPLES / "mnist").glob("*.png"))[:3]]
FASHION = sorted((SAMPLES / "fashion-mnist").glob("*.png"))[0].read_bytes()
STAGES = ["load", "preprocess", "predict", "postprocess"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Spy(Pipeline):
    """The app's real pipeline, noting which stage ran (each stage then runs as it always does)."""

    def __init__(self, real: Pipeline):
        self.__dict__.update(real.__dict__)
        self.calls: list[str] = []

    def load(self, *args, **kwargs):
        self.calls.append("load")
        return super().load(*args, **kwargs)

    def preprocess(self, *args, **kwargs):
        self.calls.append("preprocess")
        return super().preprocess(*args, **kwargs)

    def preprocess_tensor(self, *args, **kwargs):
        self.calls.append("preprocess")
        return super().preprocess_tensor(*args, **kwargs)

    def predict(self, *args, **kwargs):
        self.calls.append("predict")
        return super().predict(*args, **kwargs)

    def predict_occluded(self, *args, **kwargs):
        self.calls.append("predict")
        return super().predict_occluded(*args, **kwargs)

    def postprocess(self, *args, **kwargs):
        self.calls.append("postprocess")
        return super().postprocess(*args, **kwargs)


@pytest.fixture
def spy(app):
    state = app.extensions["vision"]
    real = state.pipeline
    state.pipeline = Spy(real)
    yield state.pipeline
    state.pipeline = real


def v2_fp32(count: int) -> dict:
    x = np.zeros((count, 1, 28, 28), np.float32).ravel().tolist()
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [count, 1, 28, 28], "data": x}]}


def v2_binary_bytes(files: list[bytes]) -> tuple[bytes, dict]:
    binary = b"".join(struct.pack("<I", len(f)) + f for f in files)
    header = json.dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [len(files)],
                                     "parameters": {"binary_data_size": len(binary)}}]}).encode()
    return header + binary, {"Inference-Header-Content-Length": str(len(header)),
                             "Content-Type": "application/octet-stream"}


def version(app, name: str = "mnist") -> str:
    return app.extensions["vision"].registry.models[name].card.version


# (route, model, images, request kwargs for the test client)
ROUTES = [
    ("/predict", "mnist", 1, lambda app: {"json": {"base64": b64(MNIST[0])}}),
    ("/predict (upload)", "mnist", 1, lambda app: {"data": MNIST[0], "content_type": "image/png"}),
    ("/predict (batch)", "mnist", 3, lambda app: {"json": {"instances": [{"base64": b64(d)} for d in MNIST]}}),
    ("/v1/models/fashion-mnist/predict", "fashion-mnist", 1, lambda app: {"json": {"base64": b64(FASHION)}}),
    ("/v1/models/mnist/versions/{v}/predict", "mnist", 2,
     lambda app: {"json": {"instances": [{"base64": b64(d)} for d in MNIST[:2]]}}),
    ("/v2/models/mnist/infer (FP32)", "mnist", 2, lambda app: {"json": v2_fp32(2)}),
    ("/v2/models/mnist/infer (BYTES)", "mnist", 3, lambda app: {"json": {"inputs": [
        {"name": "input", "datatype": "BYTES", "shape": [3], "data": [b64(d) for d in MNIST]}]}}),
    ("/v2/models/mnist/versions/{v}/infer (binary BYTES)", "mnist", 2,
     lambda app: dict(zip(("data", "headers"), v2_binary_bytes(MNIST[:2]), strict=True))),
    ("/v2/models/mnist/infer (image body)", "mnist", 1, lambda app: {"data": MNIST[0], "content_type": "image/png"}),
    ("/v1/models/mnist/explain", "mnist", 1, lambda app: {"json": {"base64": b64(MNIST[0])}}),
]


def counts(app, model: str) -> dict[str, float]:
    registry = app.extensions["vision"].metrics.registry
    value = lambda name: registry.get_sample_value(name, {"model": model}) or 0.0  # noqa: E731
    predictions = sum(s.value for m in registry.collect() if m.name == "vision_predictions"
                      for s in m.samples if s.name.endswith("_total") and s.labels["model"] == model)
    return {"preprocessing": value("vision_preprocessing_duration_seconds_count"),
            "inference": value("vision_inference_duration_seconds_count"),
            "batch_images": value("vision_batch_size_sum"),
            "predictions": predictions}


@pytest.mark.parametrize("route, model, images, kwargs", ROUTES, ids=[r[0] for r in ROUTES])
def test_every_predicting_route_runs_each_stage_once(app, client, spy, route, model, images, kwargs):
    path = route.split(" (")[0].format(v=version(app, model))
    before = counts(app, model)
    resp = client.post(path, **kwargs(app))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert spy.calls == STAGES
    after = counts(app, model)
    # preprocessing once per image, inference once per run, every image's verdict counted once
    assert {k: after[k] - before[k] for k in after} == {"preprocessing": images, "inference": 1,
                                                        "batch_images": images, "predictions": images}


@pytest.mark.parametrize("path, body, kwargs", [
    ("/v1/models/cifar/predict", {"base64": b64(MNIST[0])}, {}),
    ("/v1/models/mnist/versions/0.0.0-nope/predict", {"base64": b64(MNIST[0])}, {}),
    ("/v2/models/cifar/infer", v2_fp32(1), {}),
    ("/v2/models/mnist/versions/0.0.0-nope/infer", v2_fp32(1), {}),
    ("/v1/models/cifar/explain", {"base64": b64(MNIST[0])}, {}),
])
def test_one_model_lookup_with_one_error(client, spy, path, body, kwargs):
    """Every route looks a model up through the pipeline's load stage and says the same thing."""
    resp = client.post(path, json=body, **kwargs)
    assert resp.status_code == 404
    error = resp.json["error"]
    message = error if path.startswith("/v2") else error["message"]  # v2 errors are {"error": "..."}
    if "cifar" in path:
        assert message == "unknown model 'cifar'; available: mnist, fashion-mnist"
    else:
        assert "0.0.0-nope" in message
    assert spy.calls == ["load"]  # refused before the body is read or any image is decoded
