"""The verdict on each prediction: does the image look like what the model was trained on?

``Model.predict`` returns, per image, class probabilities, an ``ood_score`` (higher = more unusual;
the method is baked into the ONNX graph) and ``in_distribution`` (score ≤ the model card's
threshold). This module turns one image's row into the fields every route shares, and applies
strict mode: an out-of-distribution image then gets ``"label": null`` and ``"class_index": null``
with a reason instead of a guessed class — still a 200, probabilities kept, so a client sees what the
model would have said.

Strict mode comes from the request (``?strict=`` or a ``"strict"`` body field) or, when the request
says nothing, from the server (``VISION_OOD_STRICT``).
"""

from __future__ import annotations

import math

from backend.contract import INVALID_REQUEST, subject
from backend.errors import ApiError

FLOAT32_MAX = 3.4028234663852886e38  # JSON has no infinity: an unbounded score is reported as this

# ``?strict`` alone (an empty value) means true, as a bare flag reads.
_TRUE, _FALSE = frozenset({"", "true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


def is_strict(query: str | None, field: bool | None, default: bool) -> bool:
    """Strict mode for this request: ``?strict=`` wins, then the body's ``strict``, then the server's."""
    if query is not None:
        value = query.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ApiError(f"query parameter 'strict' must be true or false, got {query[:20]!r}", code=INVALID_REQUEST)
    return default if field is None else field


def reason(model: str, score: float, threshold: float) -> str:
    """Why an image is out of distribution, in words a person can act on."""
    return (f"this does not look like {subject(model)}: its ood_score {score:.4g} is above the "
            f"model's threshold {threshold:.4g}")


def score_value(score) -> float:
    """A JSON-safe float (NaN and ±inf, which no valid image gives, become the float32 maximum)."""
    value = float(score)
    return value if math.isfinite(value) else FLOAT32_MAX


def fields(model: str, labels, index: int, row, score, in_distribution, threshold: float, strict: bool) -> dict:
    """The prediction fields of one image whose most probable class is ``index``: label, class_index,
    confidence, probabilities, the verdict (in_distribution, ood_score) and, out of distribution, a
    reason — with label and class_index null in strict mode."""
    ok = bool(in_distribution)
    value = score_value(score)
    item = {"label": labels[index], "class_index": index, "confidence": float(row[index]),
            "probabilities": row.tolist(), "in_distribution": ok, "ood_score": value}
    if not ok:
        item["reason"] = reason(model, value, threshold)
        if strict:
            item["label"] = item["class_index"] = None
    return item
