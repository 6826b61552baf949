"""Minimal TorchServe handler serving models/mnist.pt the way the backend serves mnist.onnx.

Same request body ({"base64": ...}), same decoding and preprocessing code (backend.model.decoding,
backend.model.preprocessing — imported from the repository through PYTHONPATH, so both servers do
exactly the same work per image), the assignment's Net in PyTorch, and the same response fields.
Only the serving stack differs: that is what benchmarks/compare_torchserve.py measures.
"""

import json

import numpy as np
import torch

from backend.contract import DIGIT
from backend.model.decoding import decode_base64, open_image
from backend.model.preprocessing import preprocess
from visionctl.ml.model import Net

MAX_PIXELS = 16_000_000
MEAN, STD = 0.1307, 0.3081
LABELS = [str(i) for i in range(10)]
_net = None


def _load(context):
    global _net
    torch.set_num_threads(1)  # like OMP_NUM_THREADS=1: one core per worker, as tuned TorchServe runs
    props = context.system_properties
    manifest = context.manifest
    path = f"{props['model_dir']}/{manifest['model']['serializedFile']}"
    net = Net()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.eval()
    _net = net


def _image(row) -> np.ndarray:
    body = row.get("body") if row.get("body") is not None else row.get("data")
    if isinstance(body, (bytes, bytearray)):
        body = json.loads(body)
    img = open_image(decode_base64(body["base64"]), MAX_PIXELS)
    return preprocess(img, DIGIT)


def handle(data, context):
    if _net is None:
        _load(context)
    if data is None:  # TorchServe's initialisation call
        return None
    x = (np.stack([_image(row) for row in data]) - MEAN) / STD
    with torch.inference_mode():
        log_probs = _net(torch.from_numpy(x.astype(np.float32)).unsqueeze(1))
    probs = log_probs.exp().double().numpy()
    out = []
    for row in probs:
        i = int(row.argmax())
        out.append({"label": LABELS[i], "class_index": i, "confidence": float(row[i]),
                    "probabilities": row.tolist()})
    return out
