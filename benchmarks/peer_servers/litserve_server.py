"""LitServe: the shared ONNX classifier (digits.py) behind ``LitServer`` with dynamic batching.

    python litserve_server.py PORT WORKERS MAX_BATCH BATCH_TIMEOUT_S

Settings per LitServe's docs for CPU throughput: ``accelerator="cpu"``, ``workers_per_device``
inference processes, batching via ``LitAPI(max_batch_size, batch_timeout)``, ``log_level="warning"``
(no access log) and no generated client file; API server processes at LitServe's default (one per
inference worker).
"""

import sys

import litserve as ls
from digits import Classifier, image


class DigitsAPI(ls.LitAPI):
    def setup(self, device):
        self.classifier = Classifier()

    def decode_request(self, request):
        return image(request["base64"])

    def predict(self, x):  # (N, 28, 28) with batching: LitAPI.batch stacks numpy inputs
        return self.classifier.predict(x)

    def encode_response(self, output):
        return output


if __name__ == "__main__":
    port, workers, max_batch, timeout = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    api = DigitsAPI(max_batch_size=max_batch, batch_timeout=timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=workers)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)
