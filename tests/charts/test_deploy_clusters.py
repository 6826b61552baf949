"""docs/deploy.md "Deploy on your own cluster": one copy-paste block per distribution, each naming the
steps a first-time user needs in order — build the backend image, load it the way that cluster
needs, apply the manifests, wait for the rollout, curl the API (the curls themselves run against a
real backend in test_readme.py)."""

from __future__ import annotations

import re

import pytest
from helm_render import MIN_KUBERNETES
from readme import doc, section, shell_blocks

from visionctl import constants

SECTION = section(doc("docs/deploy.md"), "Deploy on your own cluster")
# The image the chart and manifests run (the chart's appVersion, which tests/charts/test_chart.py ties to it).
IMAGE = f"{constants.BACKEND_IMAGE}:{constants.IMAGE_TAG}"
LOAD = {
    "k3s": f"docker save {IMAGE} | sudo k3s ctr images import -",
    "k3d": f"k3d image import {IMAGE} -c demo",
    "kind": f"kind load docker-image {IMAGE}",
    "minikube": f"minikube image load {IMAGE}",
    "Docker Desktop": "# image load: none",
}


def blocks() -> dict[str, str]:
    out = {}
    for part in SECTION.split("\n### ")[1:]:
        part = part.split("\n**Debug pod.**", 1)[0]
        name = part.split("\n", 1)[0].strip()
        found = shell_blocks(part)
        assert len(found) == 1, f"{name}: expected one block"
        out[name] = found[0]
    return out


def test_one_block_per_cluster():
    assert list(blocks()) == list(LOAD)


@pytest.mark.parametrize("name", list(LOAD))
def test_block_builds_loads_applies_waits_and_curls_in_order(name):
    lines = [line for line in blocks()[name].splitlines() if line.strip()]

    def first(pattern: str) -> int:
        hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert hits, f"{name}: no line matching {pattern!r}"
        return hits[0]

    steps = [first(rf"^docker build -f Dockerfile\.backend -t {re.escape(IMAGE)} \.$"),
             first(re.escape(LOAD[name])),
             first(r"^kubectl apply -f deploy/manifests/( |$)"),
             first(r"^kubectl -n vision-ai rollout status deployment/vision-ai-backend"),
             first(r'^curl -X POST "http://localhost:8080/predict" -H "Content-Type: application/json" '
                   r'-d "\{\\"base64\\": '),
             first(r'^# → \{"model": "mnist", "label": "7"')]
    assert steps == sorted(steps), f"{name}: steps out of order"
    assert "frontend" not in blocks()[name]  # the evaluator's path needs only the backend image
    # The endpoint is named: the LoadBalancer's localhost URL, or the port-forward.
    assert re.search(r"endpoint: http://localhost:8080|port-forward svc/vision-ai-backend 8080:8080", blocks()[name])


def test_minimum_version_is_the_validated_one():
    major_minor = ".".join(MIN_KUBERNETES.split(".")[:2])
    # Both the claimed minimum and the version it is validated against name MIN_KUBERNETES.
    assert f"Kubernetes **≥ {major_minor}**" in SECTION
    assert re.search(rf"kubernetes-validate --strict` for\s+{re.escape(major_minor)} and the newest schema", SECTION)


def test_debug_pod_runs_outside_the_restricted_namespace():
    line = next(b for b in shell_blocks(SECTION) if b.startswith("kubectl run"))
    assert "-n default" in line and "vision-ai-backend.vision-ai:8080" in line
