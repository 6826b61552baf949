"""Occlusion explanations, in-process (Flask's test client, real models): attribution concentrates on
the ink (digits) and on the garment (clothing) of real test images; the overlay is a real PNG."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from api_errors import assert_error
from PIL import Image
from repo import SAMPLES

from backend.model.decoding import open_image
from backend.model.preprocessing import preprocess


# Measured per-pixel ratio (object / background): digits 4.6-10.6 on every sample; clothing median
# ~3.8, with two garments (T-shirt, pullover) that fill most of the frame near 1.
@pytest.mark.parametrize("name,dataset,mode,min_share", [("mnist", "mnist", "digit", 1.0),
                                                         ("fashion-mnist", "fashion-mnist", "frame", 0.6)])
def test_attribution_concentrates_on_the_object(client, name, dataset, mode, min_share):
    ratios = []
    for path in sorted((SAMPLES / dataset).glob("*.png")):
        data = path.read_bytes()
        resp = client.post(f"/v1/models/{name}/explain", data=data, headers={"Content-Type": "image/png"})
        assert resp.status_code == 200, resp.text
        out = resp.json
        attr = np.array(out["attributions"])
        assert attr.shape == (28, 28) and np.isfinite(attr).all()
        pred = client.post(f"/v1/models/{name}/predict", data=data, headers={"Content-Type": "image/png"}).json
        assert (out["label"], out["class_index"], out["model"]) == (pred["label"], pred["class_index"], name)
        assert (out["method"], out["window"], out["stride"]) == ("occlusion", 6, 2)
        assert out["probabilities"] == pytest.approx(pred["probabilities"], abs=1e-6)
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


def test_explain_rejects_like_predict(client):
    resp = client.post("/v1/models/mnist/explain", data=b"junk", headers={"Content-Type": "image/png"})
    assert_error(resp, 422, "unsupported_image")
    resp = client.post("/v1/models/mnist/explain", json={"instances": [{"base64": base64.b64encode(
        (SAMPLES / "mnist" / "0-0.png").read_bytes()).decode()}]})
    assert_error(resp, 400, "invalid_request", "one image")
    assert_error(client.post("/v1/models/cifar/explain", json={}), 404, "model_not_found", "cifar")
    assert_error(client.get("/v1/models/mnist/explain"), 405, "method_not_allowed", "POST")
