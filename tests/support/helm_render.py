"""Render the real chart with the real ``helm`` binary, for the tests in tests/charts/.

``helm`` is looked up as ``$HELM``, then on ``PATH``, then in ``.tools/bin`` (where
``../shared/tools/install-helm.sh .tools/bin`` puts it). When it is missing the tests skip —
except with ``VISION_REQUIRE_HELM=1`` (CI), where they fail: a chart nobody rendered is unverified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache, lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vision-ai"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Scenario name -> values files: the chart defaults plus every ci/*-values.yaml.
SCENARIOS = {"default": [], **{p.name.removesuffix("-values.yaml"): [p] for p in CI_VALUES}}


@lru_cache(maxsize=1)
def helm_binary() -> str | None:
    for candidate in (os.environ.get("HELM"), shutil.which("helm"), str(ROOT / ".tools" / "bin" / "helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_helm() -> str:
    """The helm path, or skip (fail when ``VISION_REQUIRE_HELM=1``)."""
    helm = helm_binary()
    if helm:
        return helm
    message = "helm not found ($HELM, PATH, .tools/bin); run ../shared/tools/install-helm.sh .tools/bin"
    if os.environ.get("VISION_REQUIRE_HELM") == "1":
        pytest.fail(message + " (VISION_REQUIRE_HELM=1)")
    pytest.skip(message)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([require_helm(), *args], capture_output=True, text=True, check=check, timeout=120)


def template(values_files=(), set_values=(), release="vision-ai", namespace="vision-ai",
             skip_tests=False, check=True) -> subprocess.CompletedProcess:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values_files:
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    if skip_tests:
        args.append("--skip-tests")
    return helm(*args, check=check)


def load_docs(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@cache
def _render_cached(scenario: str) -> str:
    return template(SCENARIOS[scenario]).stdout


def render(scenario: str) -> list[dict]:
    """Objects of one scenario (fresh dicts each call, so tests may mutate them)."""
    return load_docs(_render_cached(scenario))


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """(``Kind/name``, pod spec) of every workload and bare Pod."""
    out = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            out.append((f"Pod/{doc['metadata']['name']}", doc["spec"]))
    return out


def pod_labels(doc: dict) -> dict:
    return doc["spec"]["template"]["metadata"]["labels"] if doc["kind"] != "Pod" else doc["metadata"]["labels"]


def find(docs: list[dict], kind: str, name: str | None = None, component: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)
            and (component is None or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)]


def matches(selector: dict, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions; {} matches all)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# The oldest Kubernetes we claim (docs/deploy.md "Deploy on your own cluster"): 1.30 turned the preStop
# `sleep` action on by default (the schema of 1.29 and older rejects it); matchLabelKeys, Pod
# Security admission, autoscaling/v2 and policy/v1 are older. Validated against it and the newest
# schema kubernetes-validate ships.
MIN_KUBERNETES = "1.30.0"


def kubernetes_versions() -> list[str]:
    from kubernetes_validate.utils import latest_version

    return [MIN_KUBERNETES, latest_version()]


def validate_objects(docs: list[dict], version: str) -> list[str]:
    """Strict schema validation of every object; returns error strings (empty = valid).

    Only Prometheus Operator kinds (CRDs, no schema in kubernetes-validate) may lack a schema.
    """
    from kubernetes_validate import utils

    errors = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            utils.validate(doc, version, strict=True)
        except utils.SchemaNotFoundError as exc:
            if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
                errors.append(f"{where}: {exc.message}")
        except utils.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where}: {path}: {exc.message}")
    return errors
