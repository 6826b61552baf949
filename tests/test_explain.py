"""Occlusion explanations over real HTTP: attribution concentrates on the ink (digits) and on the
garment (clothing) of real test images; the overlay is a real PNG."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import requests
from devkit.backend_server import BackendServer, test_model_dir
from PIL import Image

from backend.decoding import open_image
from backend.preprocessing import preprocess

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="module")
def server():
    with BackendServer(model_dir=test_model_dir()) as s:
        yield s


# Measured per-pixel ratio (object / background): digits 4.6-10.6 on every sample; clothing median
# ~3.8, with two garments (T-shirt, pullover) that fill most of the frame near 1.
@pytest.mark.parametrize("name,dataset,mode,min_share", [("mnist", "mnist", "digit", 1.0),
                                                         ("fashion-mnist", "fashion-mnist", "frame", 0.6)])
def test_attribution_concentrates_on_the_object(server, name, dataset, mode, min_share):
    ratios = []
    for path in sorted((SAMPLES / dataset).glob("*.png")):
        data = path.read_bytes()
        resp = requests.post(f"{server.url}/v1/models/{name}/explain", data=data,
                             headers={"Content-Type": "image/png"})
        assert resp.status_code == 200, resp.text
        out = resp.json()
        attr = np.array(out["attributions"])
        assert attr.shape == (28, 28) and np.isfinite(attr).all()
        pred = requests.post(f"{server.url}/v1/models/{name}/predict", data=data,
                             headers={"Content-Type": "image/png"}).json()
        assert out["label"] == pred["label"]
        overlay = Image.open(io.BytesIO(base64.b64decode(out["overlay"])))
        assert overlay.format == "PNG" and overlay.size == (224, 224)
        x = preprocess(open_image(data, 10**7), mode)
        obj = x > 0.2  # ink / garment pixels of the model input
        positive = np.clip(attr, 0, None)
        if positive.sum() == 0:  # a prediction no single patch changes: nothing to attribute
            continue
        on, off = positive[obj].mean(), positive[~obj].mean()
        ratios.append(on / max(off, 1e-12))
    assert len(ratios) >= 8
    # Mean importance per object pixel is several times that of a background pixel, for most images.
    assert np.median(ratios) > 2.0, ratios
    assert np.mean(np.array(ratios) > 2.0) >= min_share, ratios


def test_explain_rejects_like_predict(server):
    resp = requests.post(server.url + "/v1/models/mnist/explain", data=b"junk", headers={"Content-Type": "image/png"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unsupported_image"
    resp = requests.post(server.url + "/v1/models/mnist/explain", json={"instances": [{"base64": base64.b64encode(
        (SAMPLES / "mnist" / "0-0.png").read_bytes()).decode()}]})
    assert resp.status_code == 400 and "one image" in resp.json()["error"]["message"]
    assert requests.post(server.url + "/v1/models/cifar/explain", json={}).status_code == 404
