"""What every peer server does per request: the same ONNX model with the backend's ONNX Runtime settings.

Imported by the peers' entry points (kserve_server.py, litserve_server.py, bentoml_service.py,
torchserve_handler.py), each running in its own venv, so it needs only numpy, Pillow and onnxruntime.
Preprocessing is the plain one a user of those frameworks would write (decode, greyscale, resize to
28×28, normalise with the model card's mean/std) — cheaper than the backend's digit fitting, which
centres and scales the digit the way MNIST was made.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL = Path(os.environ.get("PEER_MODEL", Path(__file__).resolve().parents[2] / "models" / "mnist.onnx"))
_CARD = json.loads(MODEL.with_suffix(".json").read_text())
MEAN, STD = (np.float32(_CARD["normalization"][k]) for k in ("mean", "std"))
LABELS = _CARD["labels"]
SIDE = 28


def session() -> ort.InferenceSession:
    """The backend's session options (backend.inference.session_options): one intra-op thread, no spinning."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(MODEL), sess_options=opts, providers=["CPUExecutionProvider"])


def image(encoded: str) -> np.ndarray:
    """Base64 PNG/JPEG → float32 (28, 28) in [0, 1]."""
    img = Image.open(io.BytesIO(base64.b64decode(encoded))).convert("L")
    if img.size != (SIDE, SIDE):
        img = img.resize((SIDE, SIDE), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


class Classifier:
    """One ORT session; ``predict`` takes N images and answers one dict per image."""

    def __init__(self) -> None:
        self.session = session()

    def predict(self, images) -> list[dict]:
        x = ((np.stack(images) - MEAN) / STD).astype(np.float32, copy=False)[:, None]
        log_probs = self.session.run(["log_probs"], {"input": x})[0].astype(np.float64)
        probs = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        out = []
        for row in probs:
            i = int(row.argmax())
            out.append({"label": LABELS[i], "class_index": i, "confidence": float(row[i]),
                        "probabilities": row.tolist()})
        return out
