"""deploy/manifests/: the plain-``kubectl apply`` rendering of the chart must exist, be valid and
match the chart exactly (re-render with scripts/render-manifests.sh after changing the chart)."""

from __future__ import annotations

import os
import subprocess

import pytest

from visionctl import constants
from helm_render import ROOT, kubernetes_versions, load_docs, pod_specs, require_helm, validate_objects

MANIFESTS = ROOT / constants.MANIFESTS_DIR
SCRIPT = ROOT / "scripts" / "render-manifests.sh"


def committed() -> list[dict]:
    files = sorted(MANIFESTS.glob("*.yaml"))
    assert files, f"no manifests in {MANIFESTS}"
    return [doc for f in files for doc in load_docs(f.read_text())]


def test_manifests_do_not_drift_from_chart(tmp_path):
    helm = require_helm()
    out = tmp_path / "vision-ai.yaml"
    subprocess.run([str(SCRIPT), str(out)], check=True, capture_output=True, text=True, timeout=120,
                   env={**os.environ, "HELM": helm})
    expected = (MANIFESTS / "vision-ai.yaml").read_text()
    assert out.read_text() == expected, "deploy/manifests is stale: run scripts/render-manifests.sh"


@pytest.mark.parametrize("version", kubernetes_versions())
def test_manifests_validate_strictly(version):
    assert validate_objects(committed(), version) == []


def test_namespace_first_with_restricted_pod_security():
    docs = committed()
    ns = docs[0]
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == constants.NAMESPACE
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs[1:]:
        assert doc["metadata"]["namespace"] == constants.NAMESPACE, doc["kind"]


def test_manifests_are_plain_and_use_project_images():
    docs = committed()
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Ingress", "NetworkPolicy", "HorizontalPodAutoscaler"} <= kinds
    assert "Secret" not in kinds and "Pod" not in kinds  # no secrets, no helm test hooks
    assert not any("helm.sh/hook" in d["metadata"].get("annotations", {}) for d in docs)
    assert not any(d["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "Helm" for d in docs)
    images = sorted(c["image"] for _, spec in pod_specs(docs) for c in spec["containers"])
    assert images == sorted([f"{constants.BACKEND_IMAGE}:{constants.IMAGE_TAG}",
                             f"{constants.FRONTEND_IMAGE}:{constants.IMAGE_TAG}"])
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert names == {f"{constants.RELEASE_NAME}-backend", f"{constants.RELEASE_NAME}-frontend"}
