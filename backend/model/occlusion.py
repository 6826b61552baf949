"""Occlusion sensitivity, the arithmetic behind ``POST /v1/models/{name}/explain``: which parts of
the 28×28 input a prediction depends on, and a PNG overlay of them.

Every ``WINDOW``×``WINDOW`` patch (stride ``STRIDE``) is set to background (0) and the drop in the
predicted class's probability is spread over the patch's pixels. All occluded copies plus the
original go through ONNX Runtime as one batch (145 rows), so the cost is fixed and small whatever the
image: no gradients, no torch. Free of Flask, so the API description (``backend.web.openapi_protocols``)
reads the window and stride from here without importing a blueprint.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from backend.model.card import IMAGE_SIDE

WINDOW, STRIDE = 6, 2
OVERLAY_SCALE = 8  # 28 px → 224 px
_STARTS = range(0, IMAGE_SIDE - WINDOW + 1, STRIDE)
PATCHES = [(r, c) for r in _STARTS for c in _STARTS]


def occlusion_batch(image: np.ndarray) -> np.ndarray:
    """(28, 28) → (1 + patches, 28, 28): the image, then one copy per occluded patch."""
    batch = np.repeat(image[None], len(PATCHES) + 1, axis=0)
    for i, (r, c) in enumerate(PATCHES, start=1):
        batch[i, r:r + WINDOW, c:c + WINDOW] = 0.0
    return batch


def attributions(probs: np.ndarray, class_index: int) -> np.ndarray:
    """Probabilities of ``occlusion_batch`` → (28, 28) mean probability drop per pixel (signed)."""
    drop = probs[0, class_index] - probs[1:, class_index]
    total = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    count = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    for d, (r, c) in zip(drop, PATCHES, strict=True):
        total[r:r + WINDOW, c:c + WINDOW] += d
        count[r:r + WINDOW, c:c + WINDOW] += 1
    return total / np.maximum(count, 1)


def overlay_png(image: np.ndarray, attr: np.ndarray) -> bytes:
    """The model input in grey with the positive attributions in red (brighter = more important)."""
    grey = np.clip(image * 255.0 * 0.6, 0, 255)
    peak = attr.max()
    heat = np.clip(attr / peak, 0, 1) if peak > 0 else np.zeros_like(attr)
    rgb = np.stack([grey + (255 - grey) * heat, grey * (1 - heat), grey * (1 - heat)], axis=-1)
    img = Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")
    img = img.resize((IMAGE_SIDE * OVERLAY_SCALE,) * 2, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
