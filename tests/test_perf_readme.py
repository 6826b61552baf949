"""README's TorchServe comparison table is the one the saved benchmark results produce."""

from __future__ import annotations

import json
import sys

from repo import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_torchserve import BEGIN, END, markdown_table  # noqa: E402  (a script folder, not a package)


def test_readme_table_matches_saved_results():
    results = json.loads((ROOT / "benchmarks" / "results" / "compare_torchserve.json").read_text())
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(BEGIN) + len(BEGIN): readme.index(END)].strip()
    assert block == markdown_table(results), "run: python benchmarks/compare_torchserve.py --readme"
    assert not results["short"], "README quotes a full run, not the CI short mode"
    for png in ("compare_torchserve.png", "scaling.png"):
        assert (ROOT / "benchmarks" / "results" / png).stat().st_size > 10_000
