"""The chart's README parameter tables and values.schema.json are generated from values.yaml
(scripts/chart-docs.sh): the committed files must equal a fresh generation, and the check must be
able to fail.

The generator is installed with npm; without npm these tests skip, except with
``VISION_REQUIRE_HELM=1`` (CI), where they fail like the other chart tests: docs nobody
regenerated are unverified.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helm_render import CHART, ROOT

SCRIPT = ROOT / "scripts" / "chart-docs.sh"
PINS = ROOT / "scripts" / "chart-docs"


def require_npm() -> None:
    if shutil.which("npm") and shutil.which("node"):
        return
    message = "npm/node not found: scripts/chart-docs.sh installs readme-generator-for-helm with them"
    if os.environ.get("VISION_REQUIRE_HELM") == "1":
        pytest.fail(message + " (VISION_REQUIRE_HELM=1)")
    pytest.skip(message)


def chart_docs(root: Path, *args: str) -> subprocess.CompletedProcess:
    require_npm()
    # The first run installs the pinned generator into the user's cache; later runs reuse it.
    return subprocess.run(["bash", str(root / "scripts" / "chart-docs.sh"), *args], capture_output=True,
                          text=True, timeout=300)


def copy_of_the_inputs(tmp_path: Path) -> Path:
    """Just what the script reads and writes, so a test may edit it without touching the checkout."""
    shutil.copytree(PINS, tmp_path / "scripts" / "chart-docs")
    shutil.copy2(SCRIPT, tmp_path / "scripts" / "chart-docs.sh")
    chart = tmp_path / "charts" / "vision-ai"
    chart.mkdir(parents=True)
    for name in ("values.yaml", "README.md", "values.schema.json"):
        shutil.copy2(CHART / name, chart / name)
    return chart


def test_committed_docs_match_values_yaml():
    result = chart_docs(ROOT, "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_when_a_description_changes_without_regenerating(tmp_path):
    chart = copy_of_the_inputs(tmp_path)
    values = chart / "values.yaml"
    old = "## @param backend.threads ONNX Runtime threads (`VISION_THREADS`)"
    assert old in values.read_text()
    values.write_text(values.read_text().replace(old, old + " per worker"))
    result = chart_docs(tmp_path, "--check")
    assert result.returncode == 1, result.stdout + result.stderr
    # Both generated files are stale, and the diff names the new text.
    added = [line[1:].strip() for line in result.stdout.splitlines() if line.startswith("+")]
    assert "+++ charts/vision-ai/README.md (generated)" in result.stdout
    assert "+++ charts/vision-ai/values.schema.json (generated)" in result.stdout
    assert any(line.startswith("| `backend.threads`") and "per worker" in line for line in added)
    assert '"description": "ONNX Runtime threads (`VISION_THREADS`) per worker",' in added
    assert "is stale: run scripts/chart-docs.sh" in result.stderr
    # Without --check it rewrites them, after which the check passes again.
    assert chart_docs(tmp_path).returncode == 0
    assert chart_docs(tmp_path, "--check").returncode == 0


def test_an_undocumented_value_is_refused(tmp_path):
    chart = copy_of_the_inputs(tmp_path)
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("  threads: 8\n", "  threads: 8\n  undocumented: 1\n"))
    result = chart_docs(tmp_path)
    assert result.returncode != 0
    assert "backend.undocumented" in result.stdout + result.stderr


def augment(tmp_path: Path, generated: dict, constraints: list[dict]) -> subprocess.CompletedProcess:
    (tmp_path / "in.json").write_text(json.dumps(generated))
    (tmp_path / "extra.json").write_text(json.dumps({"root": {"title": "t"}, "constraints": constraints}))
    return subprocess.run([sys.executable, str(PINS / "augment_schema.py"), str(tmp_path / "in.json"),
                           str(tmp_path / "extra.json"), str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=30)


def test_augment_rules(tmp_path):
    generated = {"title": "Chart Values", "type": "object", "properties": {"a": {"type": "object", "properties": {
        "n": {"type": "number", "default": 2}, "f": {"type": "number", "default": 0.5},
        "s": {"type": "string", "default": ""}}}}}
    result = augment(tmp_path, generated, [{"paths": ["a.s"], "set": {"type": None, "enum": ["", "x"]}},
                                           {"paths": ["a.m"], "set": {"type": "object"}}])
    assert result.returncode == 0, result.stderr
    schema = json.loads((tmp_path / "out.json").read_text())
    a = schema["properties"]["a"]
    assert schema["title"] == "t" and schema["additionalProperties"] is False and a["additionalProperties"] is False
    assert a["properties"]["n"]["type"] == "integer" and a["properties"]["f"]["type"] == "number"
    assert a["properties"]["s"] == {"default": "", "enum": ["", "x"]}
    assert a["properties"]["m"] == {"type": "object"}  # created: the generator leaves such maps out


def test_a_constraint_for_a_renamed_value_is_an_error(tmp_path):
    """Otherwise renaming a value in values.yaml would silently drop its validation."""
    generated = {"type": "object", "properties": {"a": {"type": "string"}}}
    result = augment(tmp_path, generated, [{"paths": ["*.gone"], "set": {"minLength": 1}}])
    assert result.returncode != 0 and "'*.gone' matches no value" in result.stderr
