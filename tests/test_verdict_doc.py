"""docs/verdict.md is documentation users run: its curl commands answer what it says, and its tables
name the fields, settings, metrics and alerts that exist."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from readme import shell_blocks
from repo import ROOT

from backend.config import Config
from backend.openapi import openapi_document

DOC = (ROOT / "docs" / "verdict.md").read_text()
CURLS = [line.strip() for block in shell_blocks(DOC) for line in block.splitlines()
         if line.strip().startswith("curl -X POST")]


@pytest.fixture(scope="module")
def server_env():
    return {"VISION_OOD_STRICT": "0"}


@pytest.mark.parametrize("line", CURLS, ids=lambda line: line.split('"')[1])
def test_documented_curls_give_the_documented_verdict(line, server):
    out = subprocess.run(["bash", "-c", line.replace("http://localhost:8080", server.url)
                          + " --silent --show-error --fail-with-body"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    body = json.loads(out.stdout)
    assert body["in_distribution"] is False  # every example sends a boot to the digit model
    assert body["reason"].startswith("this does not look like a handwritten digit")
    strict = "strict=true" in line or '\\"strict\\": true' in line
    assert (body["label"] is None) is strict and (body["class_index"] is None) is strict
    assert abs(sum(body["probabilities"]) - 1) < 1e-4


def test_there_are_plain_and_strict_examples():
    assert len(CURLS) >= 3 and any("strict" in c for c in CURLS) and any("strict" not in c for c in CURLS)


def test_the_field_table_is_the_openapi_schema(tmp_path):
    fields = openapi_document(Config(model_dir=tmp_path))["components"]["schemas"]["Prediction"]["properties"]
    documented = set(re.findall(r"^\| `(\w+)`", DOC.split("## Strict mode")[0], re.M))
    documented |= {"label", "class_index", "confidence", "probabilities"}
    assert {"in_distribution", "ood_score", "reason"} <= documented
    assert documented <= set(fields)


def test_metrics_and_alerts_exist(server):
    import urllib.request

    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    section = DOC.split("## Drift metrics and alerts")[1]
    for metric in re.findall(r"^\| `(vision_\w+)`", section, re.M):
        assert f"\n{metric}" in text or f"# TYPE {metric}" in text, metric
    rules = yaml.safe_load((ROOT / "charts" / "vision-ai" / "files" / "vision-ai.rules.yml").read_text())
    names = {r.get("alert") or r.get("record") for g in rules["groups"] for r in g["rules"]}
    for name in re.findall(r"`((?:VisionAI|job_model)[\w:]+)`", section):
        assert name in names, name
    assert "VISION_OOD_STRICT" in DOC and Config.from_env(
        {"VISION_MODEL_DIR": str(ROOT), "VISION_OOD_STRICT": "1"}).ood_strict
