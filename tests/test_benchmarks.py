"""The benchmark scripts the READMEs document, run for real on small settings.

These check that the commands work and write what they promise, not how fast anything is: speed
is measured by the benchmarks themselves on an idle machine, never asserted in a test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("VISION_DATA_DIR", ROOT.parent / "shared" / "datasets"))


def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_load_benchmark_with_two_workers(tmp_path):
    if not shutil.which("wrk"):
        pytest.fail("wrk is missing (apt-get install wrk; scripts/test.sh installs it)")
    proc = run("benchmarks/load.py", "--workers", "2", "--threads", "2", "--concurrency", "1,4",
               "--duration", "1", "--warmup", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "load.json").read_text())
    assert results["server"]["workers"] == 2 and results["server"]["threads"] == 2
    for endpoint in ("predict", "healthz"):
        runs = results["runs"][endpoint]
        assert [r["concurrency"] for r in runs] == [1, 4]
        for r in runs:
            assert r["requests"] > 0 and sum(r["errors"].values()) == 0, r  # every answer a 200
            assert r["server_cpu_us_per_request"] > 0  # the workers' CPU is counted, not just the supervisor's
    assert set(results["summary"]) == {"c1", "c4"}
    assert (tmp_path / "latency.png").stat().st_size > 10_000
    assert "| /predict | 4 |" in proc.stdout  # the Markdown table the READMEs quote


def test_variants_benchmark_on_a_subset(tmp_path):
    proc = run("benchmarks/variants.py", "--data-dir", str(DATASETS), "--limit", "30",
               "--out", str(tmp_path / "variants.json"), "--docs", str(tmp_path / "docs"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((tmp_path / "variants.json").read_text())
    assert [m["model"] for m in results["models"]] == ["mnist", "fashion-mnist"]
    for model in results["models"]:
        assert model["samples"] == 30 and len(model["variants"]) >= 5
        assert all(0.0 <= row["accuracy"] <= 1.0 for row in model["variants"])
    assert (tmp_path / "docs" / "variants.md").read_text().count("|") > 20
    assert (tmp_path / "docs" / "mnist-variants.png").is_file()


def test_finetune_strategies_benchmark_on_a_subset(tmp_path):
    out = tmp_path / "strategies.json"
    proc = run("benchmarks/finetune_strategies.py", "--data-dir", str(DATASETS / "fashion-mnist"),
               "--epochs", "1", "--limit", "600", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["strategy"] for r in rows] == ["fc2", "fc1+fc2", "all"]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and len(r["per_epoch"]) == 1 for r in rows)
    assert "best: " in proc.stdout


def test_protocols_benchmark_short(tmp_path):
    """Explain latency and v2 vs /predict latency stay inside the script's budgets."""
    out = tmp_path / "protocols.json"
    proc = run("benchmarks/protocols.py", "--requests", "30", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"predict_json", "predict_raw_png", "v2_infer_bytes_tritonclient",
                            "v2_infer_fp32_json_tritonclient", "explain"}
