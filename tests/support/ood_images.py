"""Images for the out-of-distribution verdict's tests, and the verdict computed without the backend.

The serving tests check that every route reports the model's verdict and acts on it (strict mode),
not how good the model is at it (benchmarks/ood.py measures that). So an out-of-distribution test
image is one the shipped graph and threshold flag, found here with ONNX Runtime and the card file
alone among candidates made from a fixed seed: noise first, then patterns, then the other model's
samples.
"""

from __future__ import annotations

import functools
import io
import json

import numpy as np
from PIL import Image
from repo import SAMPLES

from devkit.backend_server import test_model_dir

OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels).astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def noise_png(seed: int = 0, side: int = 64) -> bytes:
    """Uniform grey-level noise: nothing like a digit or a clothing item."""
    return png(np.random.default_rng(seed).integers(0, 256, (side, side)))


def samples(dataset: str) -> list[bytes]:
    """The shipped test-set images, in class order."""
    files = sorted(SAMPLES.joinpath(dataset).glob("*.png"), key=lambda p: int(p.stem.split("-", 1)[0]))
    return [p.read_bytes() for p in files]


def candidates(model: str) -> list[bytes]:
    side = np.arange(64)
    patterns = [
        ((side[:, None] // 8 + side[None, :] // 8) % 2) * 255,  # checkerboard
        np.tile((side // 4 % 2) * 255, (64, 1)),  # stripes
        np.tile(side * 4, (64, 1)),  # gradient
        np.pad(np.full((40, 40), 255), 12),  # a filled square
    ]
    return [noise_png(seed) for seed in range(8)] + [png(p) for p in patterns] + samples(OTHER[model])


@functools.cache
def _session(model: str):
    import onnxruntime as ort

    return ort.InferenceSession(str(test_model_dir() / f"{model}.onnx"), providers=["CPUExecutionProvider"])


@functools.cache
def card(model: str) -> dict:
    return json.loads((test_model_dir() / f"{model}.json").read_text())


@functools.cache
def verdict(model: str, data: bytes) -> tuple[float, bool]:
    """(ood_score, in_distribution) from ONNX Runtime and the card file, not through the backend."""
    from backend.model.preprocessing import preprocess

    c = card(model)
    x = preprocess(Image.open(io.BytesIO(data)), c["input"]["preprocessing"])
    x = ((x - c["normalization"]["mean"]) / c["normalization"]["std"]).astype(np.float32)[None, None]
    (score,) = _session(model).run([c["ood"]["output"]], {c["input"]["name"]: x})
    value = float(np.asarray(score).reshape(-1)[0])
    return value, value <= c["ood"]["threshold"]


def flagged(model: str, count: int = 1) -> list[bytes]:
    """``count`` candidate images the model's threshold calls out of distribution."""
    found = [data for data in candidates(model) if not verdict(model, data)[1]][:count]
    assert len(found) == count, f"only {len(found)} of the candidate images are out of distribution for {model}"
    return found


def kept(model: str) -> list[tuple[int, bytes]]:
    """(class index, image) of the shipped samples the model's threshold keeps in distribution."""
    return [(i, data) for i, data in enumerate(samples(model)) if verdict(model, data)[1]]
