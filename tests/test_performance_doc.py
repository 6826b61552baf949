"""docs/performance.md's tables — load per server setting, and the peers comparison — are the ones the
saved benchmark results produce."""

from __future__ import annotations

import json
import sys

from repo import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import cpu_budget  # noqa: E402
import load  # noqa: E402  (a script folder, not a package)
import peers  # noqa: E402
import stack_floor  # noqa: E402


def test_the_peers_table_and_readme_figure_match_saved_results():
    results = json.loads((ROOT / "benchmarks" / "results" / "peers.json").read_text())
    assert peers.write_docs(results, check=True) == 0, "run: python benchmarks/peers.py --doc"
    assert not results["short"], "the document quotes a full run, not the CI short mode"
    assert (ROOT / "benchmarks" / "results" / "scaling.png").stat().st_size > 10_000


def test_the_cpu_budget_table_matches_saved_results():
    saved = json.loads(cpu_budget.OUT.read_text())
    assert cpu_budget.write_doc(saved, check=True) == 0, "run: python benchmarks/cpu_budget.py --doc"
    assert {"before", "after"} <= set(saved)


def test_the_load_table_matches_saved_runs():
    assert load.write_doc(check=True) == 0, "run: python benchmarks/load.py --doc"
    saved = [json.loads(p.read_text()) for p in load.DOC_RUNS]
    assert [r["server"]["workers"] for r in saved] == [2, 1]
    assert all(not r["machine"]["training_running"] for r in saved), "quoted runs were taken on an idle machine"


def test_the_stack_floor_table_matches_saved_results():
    saved = json.loads(stack_floor.OUT.read_text())
    assert not saved["short"]
    # The order the floor argument rests on, in the quoted full run (medians of 3 rounds × 8 s).
    for c, row in saved["summary"].items():
        cpu = {k: v["cpu_us_per_request"] for k, v in row.items()}
        assert 0 < cpu["floor-waitress"] < cpu["floor-flask"] < cpu["vision-1"], (c, cpu)
    assert stack_floor.write_doc(saved, check=True) == 0, "run: python benchmarks/stack_floor.py --doc"
