"""docs/performance.md's TorchServe comparison table is the one the saved benchmark results produce."""

from __future__ import annotations

import json
import sys

from repo import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_torchserve import BEGIN, DOC, END, markdown_table  # noqa: E402  (a script folder, not a package)


def test_the_table_matches_saved_results():
    results = json.loads((ROOT / "benchmarks" / "results" / "compare_torchserve.json").read_text())
    text = DOC.read_text()
    block = text[text.index(BEGIN) + len(BEGIN): text.index(END)].strip()
    assert block == markdown_table(results), "run: python benchmarks/compare_torchserve.py --doc"
    assert not results["short"], "the document quotes a full run, not the CI short mode"
    for png in ("compare_torchserve.png", "scaling.png"):
        assert (ROOT / "benchmarks" / "results" / png).stat().st_size > 10_000
