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
from backend.web.openapi import openapi_document

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

    with urllib.request.urlopen(server.metrics_url, timeout=10) as resp:
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


COST_RUNS = (("main, before the verdict", "hot_path-before-ood.json"),
             ("interim OOD graphs, served without the verdict", "hot_path-ood-models-only.json"),
             ("the verdict served, interim OOD graphs", "hot_path-after-ood-interim.json"),
             ("the verdict served, retrained models", "hot_path-after-ood.json"))


def cost_table() -> str:
    """docs/verdict.md's cost table, from the saved benchmarks/hot_path.py results."""

    def value(results: dict, section: str, path: str, key: str):
        return next((r[key] for r in results.get(section) or [] if r and r["path"] == path), None)

    results = [json.loads((ROOT / "benchmarks" / "results" / f).read_text()) for _, f in COST_RUNS]
    base = value(results[0], "instructions", "/predict", "instructions_per_request")
    lines = ["| run | saved as | instructions per /predict | vs main | in-process CPU µs, /predict and /healthz "
             "| server CPU µs per /predict over HTTP |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (name, file), r in zip(COST_RUNS, results, strict=True):
        instructions = value(r, "instructions", "/predict", "instructions_per_request")
        http = value(r, "http", "/predict", "server_cpu_us_per_request")
        change = "" if r is results[0] else f"{instructions / base - 1:+.1%}"
        lines.append(f"| {name} | `benchmarks/results/{file}` | {instructions:,} | {change} "
                     f"| {value(r, 'inproc', '/predict', 'cpu_us_per_request')} / "
                     f"{value(r, 'inproc', '/healthz', 'cpu_us_per_request')} | {http or '–'} |")
    return "\n".join(lines)


def test_cost_table_is_the_saved_benchmark():
    assert cost_table() in DOC, "docs/verdict.md's cost table differs from:\n" + cost_table()
    after = json.loads((ROOT / "benchmarks" / "results" / COST_RUNS[-1][1]).read_text())
    before = json.loads((ROOT / "benchmarks" / "results" / COST_RUNS[0][1]).read_text())
    ratio = after["instructions"][0]["instructions_per_request"] / before["instructions"][0]["instructions_per_request"]
    assert ratio <= 1.10, f"the verdict costs {ratio - 1:.1%} more instructions per /predict (budget 10 %)"
