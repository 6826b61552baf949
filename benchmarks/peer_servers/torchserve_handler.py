"""TorchServe handler: the shared ONNX classifier (digits.py) on TorchServe's batches.

TorchServe hands ``handle`` up to ``batchSize`` requests gathered within ``maxBatchDelay`` ms; each
row's body is the JSON ``{"base64": ...}`` (bytes or already parsed).
"""

import json

from digits import Classifier, image

_classifier = None


def handle(data, context):
    global _classifier
    if _classifier is None:
        _classifier = Classifier()
    if data is None:  # TorchServe's initialisation call
        return None
    images = []
    for row in data:
        body = row.get("body") if row.get("body") is not None else row.get("data")
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body)
        images.append(image(body["base64"]))
    return _classifier.predict(images)
