"""schemathesis (property-based API fuzzing from /openapi.json) against the real server: no 5xx and
no response that violates the document, with every check enabled, a fixed seed and bounded examples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def server_env():
    # Conformance, not load: the fuzzer's hundreds of explanations must not use up their CPU budget.
    return {"VISION_MAX_BATCH": "4", "VISION_EXPLAIN_CPU_SHARE": "64"}


def test_schemathesis_finds_no_violation(server, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [str(SCHEMATHESIS), "--config-file", str(config), "run", server.url + "/openapi.json", "--checks", "all",
           "--seed", "12", "--max-examples", os.environ.get("VISION_SCHEMATHESIS_EXAMPLES", "15"), "--workers", "1",
           "--no-color"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "Traceback" not in server.logs()


# Every check runs. What a JSON Schema cannot say is configured as an answer to a valid request:
# that bytes of `format: binary` or decoded base64 are an image (else 422 unsupported_image), that
# it has at most VISION_MAX_PIXELS (else 413); on v2 infer, that the data holds as many elements as
# the shape's product (else the protocol's 400). Too many instances is a schema violation the API
# answers 413 batch_too_large (by contract).
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 404, 405, 406, 413, 415, 422]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", 401, 404, 413, 422, 429, 503]

[[operations]]
include-path-regex = "^/v2/models/.+/infer$"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 404, 413, 422, 429, 503]
"""
