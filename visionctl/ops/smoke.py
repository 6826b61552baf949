"""Prove a deployment answers: POST the sample digit through the ingress, or through a
``kubectl port-forward`` (which works on every cluster, NetworkPolicy or not), and check the label.
"""

from __future__ import annotations

import json
import shlex
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from backend.contract import BACKEND_PORT
from vision_client import ApiError, ApiUnavailable, VisionClient, encode_image
from visionctl.constants import REPO_ROOT
from visionctl.ops.deploy import Target
from visionctl.ops.runner import Runner, StepFailed

SMOKE_SAMPLE = Path("samples/mnist/7-7.png")
SMOKE_LABEL = "7"


def curl_command(endpoint: str, image: bytes) -> str:
    """The copy-paste curl for ``POST <endpoint>/predict`` with a real image inlined."""
    body = json.dumps({"base64": encode_image(image)})
    return (f'curl -X POST "{endpoint.rstrip("/")}/predict" -H "Content-Type: application/json" '
            f"-d {shlex.quote(body)}")


def smoke_test(url: str, *, api_key: str | None = None, timeout: float = 120, interval: float = 2,
               sample: Path = REPO_ROOT / SMOKE_SAMPLE, expected: str = SMOKE_LABEL) -> dict:
    """POST the sample digit to ``<url>/predict`` until it answers (the ingress route can lag the
    rollout by a few seconds) and check the label. Returns the prediction."""
    image = sample.read_bytes()
    client = VisionClient(url, api_key=api_key, timeout=10)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            result = client.predict_default(image)
        except (ApiUnavailable, ApiError) as exc:
            last = str(exc)
            if isinstance(exc, ApiError) and exc.status in (400, 401, 403, 413, 415, 422):
                break  # the API answered and refused: waiting will not help
        else:
            if result.get("label") != expected:
                raise StepFailed("smoke test", f"POST {url}/predict returned label {result.get('label')!r} "
                                               f"for {sample.name}, expected {expected!r}",
                                 hint="the deployed model may be wrong: check `visionctl status` (model versions)")
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise StepFailed("smoke test", f"POST {url}/predict failed: {last}",
                     hint="pass --api-key (or VISION_API_KEY) if API keys are enabled; otherwise see "
                          "`visionctl status` and `visionctl logs backend`")


@contextmanager
def port_forward(runner: Runner, target: Target, resource: str, remote: int, *, timeout: float = 30):
    """``kubectl port-forward <resource> <free local port>:<remote>`` for the duration of the
    block; yields ``http://127.0.0.1:<port>`` once the local port accepts connections. Works on
    every cluster (NetworkPolicy does not apply to it), so it is the smoke test's universal route."""
    local = free_port()
    argv = target.kubectl("port-forward", resource, f"{local}:{remote}", "--address", "127.0.0.1")
    with runner.background(argv, title="port-forward") as proc:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise StepFailed("port-forward", f"kubectl port-forward exited with {proc.returncode}", argv=argv,
                                 tail=(proc.stderr.read() if proc.stderr else "")[-2000:],
                                 hint=f"`kubectl --context {target.context} -n {target.namespace} get pods`")
            try:
                with socket.create_connection(("127.0.0.1", local), timeout=1):
                    break
            except OSError:
                if time.monotonic() >= deadline:
                    raise StepFailed("port-forward", f"127.0.0.1:{local} not open within {timeout:g}s",
                                     argv=argv) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{local}"


def smoke_test_via_port_forward(runner: Runner, target: Target, *, api_key: str | None = None,
                                timeout: float = 120) -> dict:
    with port_forward(runner, target, f"svc/{target.deployment('backend')}", BACKEND_PORT) as url:
        return smoke_test(url, api_key=api_key, timeout=timeout)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
