"""BentoML: the shared ONNX classifier (digits.py) as a BentoML service with adaptive batching.

    bentoml serve bentoml_service:Digits --port PORT      (from this folder; settings from the env below)

Settings per BentoML's docs for CPU throughput: ``workers`` processes (PEER_WORKERS), a batchable API
(adaptive batching up to PEER_MAX_BATCH images, PEER_MAX_LATENCY_MS), access log off
(``logging.access.enabled: false``); BentoML's own metrics stay at their default (on). A batchable
API takes a list: the body is ``{"images": ["<base64 PNG>"]}`` and the answer a one-item list.
"""

import os

import bentoml
from digits import Classifier, image


@bentoml.service(workers=int(os.environ.get("PEER_WORKERS", "2")), logging={"access": {"enabled": False}})
class Digits:
    def __init__(self) -> None:
        self.classifier = Classifier()

    @bentoml.api(batchable=True, max_batch_size=int(os.environ.get("PEER_MAX_BATCH", "16")),
                 max_latency_ms=int(os.environ.get("PEER_MAX_LATENCY_MS", "1000")))
    def predict(self, images: list[str]) -> list[dict]:
        return self.classifier.predict([image(b) for b in images])
