"""KServe's Python model server: the shared ONNX classifier (digits.py) as a ``kserve.Model``.

    python kserve_server.py --http_port PORT --workers 2 --enable_grpc false --enable_latency_logging false

Settings per KServe's docs for CPU: ``--workers`` uvicorn processes, the v1 protocol
(``POST /v1/models/mnist:predict``, body ``{"base64": ...}``), no batching (the Python server has
none; KServe batches in its agent sidecar, which is not part of a local install), access log
and per-request latency lines off (``--enable_latency_logging false``, and ``--log_config_file``: KServe's
own log config with ``uvicorn.access`` and ``kserve.trace`` at WARNING, which the spawned workers
read), gRPC off (only REST is measured). Each spawned worker loads its own ORT session.
"""

import json
import sys
import tempfile

from digits import Classifier, image


def _quiet_log_config(path: str) -> None:
    from kserve.logging import KSERVE_LOG_CONFIG

    config = json.loads(json.dumps(KSERVE_LOG_CONFIG))
    for name in ("uvicorn.access", "kserve.trace"):  # access log, per-request latency lines
        config["loggers"][name]["level"] = "WARNING"
    with open(path, "w") as f:
        json.dump(config, f)


if __name__ == "__main__":  # kserve parses its arguments when first imported: add ours before
    LOG_CONFIG = tempfile.NamedTemporaryFile(prefix="kserve-log-", suffix=".json", delete=False).name
    sys.argv += ["--log_config_file", LOG_CONFIG]
    _quiet_log_config(LOG_CONFIG)

import kserve  # noqa: E402


class Digits(kserve.Model):
    def __init__(self) -> None:
        super().__init__("mnist")
        self.classifier = None
        self.load()

    def load(self) -> bool:
        self.classifier = Classifier()
        self.ready = True
        return True

    def __getstate__(self):  # the model is sent to each spawned worker; an ORT session does not pickle
        return {**self.__dict__, "classifier": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.load()

    def predict(self, payload, headers=None):
        return self.classifier.predict([image(payload["base64"])])[0]


if __name__ == "__main__":
    kserve.ModelServer().start([Digits()])
