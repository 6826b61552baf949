"""Images that are not what the models know, for the out-of-distribution verdict's tests: made here
from a fixed seed (the held-out acceptance families of the ML side are not used by the tests)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def noise_png(seed: int = 0, side: int = 64) -> bytes:
    """Uniform grey-level noise: nothing like a digit or a clothing item."""
    return png(np.random.default_rng(seed).integers(0, 256, (side, side)))
