"""The benchmark scripts the READMEs document, run for real on small settings.

These check that the commands work and write what they promise, not how fast anything is: speed
is measured by the benchmarks themselves on an idle machine, never asserted in a test.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
from repo import DATASETS, ROOT, load_benchmark


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


def test_peers_short_mode(tmp_path):
    """Real KServe, TorchServe, LitServe and BentoML (each installed into its own cached venv) and the
    real backend, 2 short rounds; the script itself fails when the backend's ratio to the fastest peer
    falls below its floor, which is the regression check CI runs."""
    if not shutil.which("wrk"):
        pytest.fail("wrk is missing (apt-get install wrk; scripts/test.sh installs it)")
    if not shutil.which("java"):
        pytest.fail("java is missing (TorchServe's frontend needs a JDK 17; apt-get install openjdk-17-jre-headless)")
    out = tmp_path / "peers.json"
    proc = run("benchmarks/peers.py", "--short", "--out", str(out), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["short"] and results["rounds"] == 2
    assert list(results["servers"]) == ["vision", "kserve", "torchserve", "litserve", "bentoml"]
    for key, runs in results["runs"].items():
        assert [(r["round"], r["concurrency"]) for r in runs] == [(1, 8), (1, 32), (2, 8), (2, 32)], key
        assert all(r["ok"] > 0 and r["ok"] == r["requests"] for r in runs), (key, runs)  # only 200s count
        assert all(r["server_cpu_us_per_request"] > 0 for r in runs), key  # the process tree is measured
        assert results["servers"][key]["settings"], key  # every setting stated
    for c in (8, 32):
        block = results["summary"][f"c{c}"]
        assert block["ratio_to_fastest"] > 0 and block["fastest_peer"] != "vision"
    assert "| KServe 0.21 Python server |" in proc.stdout


def test_scaling_benchmark_short_mode(tmp_path):
    if not shutil.which("wrk"):
        pytest.fail("wrk is missing (apt-get install wrk; scripts/test.sh installs it)")
    proc = run("benchmarks/scaling.py", "--short", "--workers", "1,2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "scaling.json").read_text())
    assert [b["workers"] for b in results["workers"]] == [1, 2]
    for block in results["workers"]:
        assert [r["concurrency"] for r in block["runs"]] == [1, 8]
        assert all(r["requests"] > 0 and sum(r["errors"].values()) == 0 for r in block["runs"])
        assert all(r["server_cpu_us_per_request"] > 0 for r in block["runs"])
        assert len(block["rss_mib"]["workers"]) == block["workers"]
        assert 30 < block["rss_mib_per_worker"] < 1000  # a real worker with ONNX Runtime and two models
    assert results["workers"][1]["rss_mib"]["supervisor"] > 0
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def test_abuse_benchmark_short_mode_stays_within_budgets(tmp_path):
    """Every attack of benchmarks/abuse.py, smaller counts: exits 1 past a CPU, memory or status budget."""
    out = tmp_path / "abuse.json"
    proc = run("benchmarks/abuse.py", "--short", "--output", str(out), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert not results["failures"]
    cases = results["results"]
    assert cases["progressive JPEG, last scan ×2000"]["statuses"] == {"422": 1}
    assert cases["5,000-digit integer"]["statuses"] == {"400": 4}
    assert "429" in cases["1,000 wrong keys"]["statuses"]
    assert cases["valid predictions (control)"]["statuses"] == {"200": 50}
    assert all(p["status"] == 200 for p in cases["stalled sockets"]["probes"].values())
    # The attacks of the latest review: each answered in JSON, cheaply, with /readyz responsive.
    assert cases["unquoted base64 fallback: 4,500 spaces"]["statuses"] == {"400": 1}
    assert cases["3 MiB body in 1-byte chunks"]["statuses"] == {"400": 1}
    assert cases["40 × 19 MiB bodies"]["statuses"] == {"413": 10}
    assert cases["v2 infer, a 400-digit number in data"]["statuses"] == {"400": 4}
    assert cases["v2 infer, non-ASCII Inference-Header-Content-Length"]["statuses"] == {"400": 4}
    assert set(cases["v2 infer, 10 MiB of [],[],… ×8 concurrent"]["statuses"]) <= {"400", "503"}
    assert "503" in cases["32 explain clients (honour Retry-After)"]["statuses"]
    assert cases["200 KB User-Agent"]["longest_log_line"] < 8192


def test_resource_safety_table_is_the_one_the_results_give():
    """docs/operations-resource-safety.md's table is rendered from the committed before/after results."""
    abuse = load_benchmark("abuse")
    before = json.loads((ROOT / "benchmarks" / "results" / "abuse-before.json").read_text())
    after = json.loads((ROOT / "benchmarks" / "results" / "abuse.json").read_text())
    assert abuse.write_docs(before, after, check=True) == 0, \
        "run `python benchmarks/abuse.py --docs` after changing the results"
    assert not after["short"] and not after["failures"], after["failures"]


def test_protocols_benchmark_short(tmp_path):
    """Explain latency and v2 vs /predict latency stay inside the script's budgets."""
    out = tmp_path / "protocols.json"
    proc = run("benchmarks/protocols.py", "--requests", "30", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"predict_json", "predict_raw_png", "v2_infer_bytes_tritonclient",
                            "v2_infer_fp32_json_tritonclient", "explain"}


def test_releases_benchmark_short_mode(tmp_path):
    """Refuse, promote, roll back and hand-operate releases under a load loop: zero failed requests."""
    out = tmp_path / "releases.json"
    proc = run("benchmarks/releases.py", "--short", "--data-dir", str(DATASETS), "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["failed_requests"] == 0 and set(results["status_codes"]) == {"200"}
    actions = [(p["phase"], (p.get("decision") or {}).get("action")) for p in results["phases"]]
    assert [a for _, a in actions[1:4]] == ["refused", "promote", "rollback"]
    assert results["phases"][1]["exit_code"] == 1 and "floor" in results["phases"][1]["message"]
    assert all(p["requests"] > 0 for p in results["phases"])


def test_ood_benchmark_short_mode_holds_the_bars(tmp_path):
    """benchmarks/ood.py --short on the shipped models: AUROC / catch rates per family, other-writer
    accuracy and ECE through the serving path; exits 1 if any falls below the committed bars."""
    out = tmp_path / "ood.json"
    proc = run("benchmarks/ood.py", "--short", "--data-dir", str(DATASETS), "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["short"] and not results["failures"]
    mnist, fashion = results["models"]
    assert mnist["model"] == "mnist" and fashion["model"] == "fashion-mnist"
    assert {"optdigits-8x8", "paper-photo", "eval-fonts"} <= set(mnist["report"]["writers"])
    assert {"uniform-noise", "photo-like", "fashion-mnist-test", "digit-mashup"} <= set(mnist["report"]["families"])
    assert all(0.5 <= row["auroc"] <= 1 for row in mnist["report"]["families"].values())
    assert mnist["cost"]["with_ood_cpu_us"] > 0 and mnist["cost"]["without_ood_cpu_us"] > 0
    assert "| OOD family | images | AUROC | flagged |" in proc.stdout
    res = mnist["resolution"]  # accuracy against the side a digit was shrunk to
    assert list(res) == ["6", "7", "8", "10", "12", "16", "20", "28"] and "| digit side (px) |" in proc.stdout
    assert res["28"]["accuracy"] > res["6"]["accuracy"] + 0.1 and res["28"]["flagged"] < res["6"]["flagged"]


def test_ood_results_and_docs_are_the_shipped_models():
    """benchmarks/results/ood.json was measured on the committed models, and docs/model.md quotes it."""
    results = json.loads((ROOT / "benchmarks" / "results" / "ood.json").read_text())
    doc = (ROOT / "docs" / "model.md").read_text()
    for m in results["models"]:
        card = json.loads((ROOT / "models" / f"{m['model']}.json").read_text())
        assert m["version"] == card["version"] and m["threshold"] == card["ood"]["threshold"]
        section = doc.split(f"#### {m['model']} {m['version']}", 1)[1].split("####", 1)[0]
        test = m["report"]["test"]
        assert f"| {m['model']} test | {test['samples']} | {test['accuracy']:.2%} | {test['ece']:.2%} |" in section
        for name, row in {**m["report"]["writers"], **m["report"]["families"]}.items():
            line = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
            assert f"{row['flagged']:.2%}" in line, line
        if "resolution" in m:
            res = m["resolution"].values()
            assert "| accuracy | " + " | ".join(f"{r['accuracy']:.1%}" for r in res) + " |" in section


def test_small_pictures_benchmark_short_mode_holds_the_bars(tmp_path):
    """benchmarks/small_pictures.py --short on the shipped MNIST model: the blocks step still lifts the
    low-resolution digits that arrive as blocks, a blocky non-digit is judged exactly as its small self,
    and small non-digits stay flagged; exits 1 otherwise."""
    out = tmp_path / "small.json"
    proc = run("benchmarks/small_pictures.py", "--short", "--data-dir", str(DATASETS), "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["short"] and not results["failures"] and results["per_set"] == 1000
    m = results["mnist"]
    for kinds in m["delivery"].values():
        assert set(kinds) == {"small", "blocks", "enlarged"} and all(k["with_step"]["samples"] for k in kinds.values())
    second = m["second_threshold"]
    assert second["threshold"] > second["card_threshold"]  # small digits are less sure: a looser threshold
    assert second["small_digits"]["second"]["flagged"] < second["small_digits"]["card"]["flagged"]
    # Faint scans (counts 0-16) are blank without the faint rule and read with it.
    counts = m["scan_forms"]["counts 0-16"]
    assert counts["with_rule"]["samples"] == 300
    assert counts["without_rule"]["flagged"] == 1.0 and counts["with_rule"]["accuracy"] > 0.9


def test_small_picture_figures_in_the_docs_are_the_saved_run():
    """docs/model.md quotes results/small_pictures.json (a full run on the shipped model)."""
    results = json.loads((ROOT / "benchmarks" / "results" / "small_pictures.json").read_text())
    card = json.loads((ROOT / "models" / "mnist.json").read_text())
    assert not results["short"] and results["mnist"]["version"] == card["version"]
    doc = (ROOT / "docs" / "model.md").read_text()
    second = results["mnist"]["second_threshold"]
    assert f"lands at {second['threshold']:.2f}" in doc
    for name in ("scribble", "glyph", "fashion-mnist-test", "shapes"):
        flagged = second["small_nondigits_flagged"][name]
        assert f"{flagged['card']:.0%} → {flagged['second']:.0%}" in doc, name
    assert load_benchmark("small_pictures").write_doc(results, check=True) == 0, \
        "run: python benchmarks/small_pictures.py --doc"


def test_small_pictures_bars_trip_on_a_broken_step_and_on_the_rejected_candidate():
    """The saved shipped run holds the bars; blocks judged worse than their small selves, or flagged more
    with the step than without, trip them; and the fresh-small-0.4 candidate's run fails on small
    scribbles, the regression that kept it from shipping."""
    import copy
    small = load_benchmark("small_pictures")
    shipped = json.loads((ROOT / "benchmarks" / "results" / "small_pictures.json").read_text())["mnist"]
    assert small.check(shipped, 0.0) == []
    broken = copy.deepcopy(shipped)
    blocks = broken["delivery"]["lowres"]["blocks"]
    blocks["with_step"]["flagged"] = broken["delivery"]["lowres"]["small"]["with_step"]["flagged"] + 0.05
    blocks["without_step"]["flagged"] = blocks["with_step"]["flagged"] - 0.01
    fails = small.check(broken, 0.0)
    assert len(fails) == 2 and all(f.startswith("lowres: blocks flagged") for f in fails), fails
    faint = copy.deepcopy(shipped)  # counts 0-16 read 3 points below the same scans in 0-255
    grey = faint["scan_forms"]["grey 0-255"]["with_rule"]["accuracy"]
    faint["scan_forms"]["counts 0-16"]["with_rule"]["accuracy"] = grey - 0.03
    assert small.check(faint, 0.0) == [f"scans as counts 0-16: accuracy {grey - 0.03:.4f}, as grey 0-255: {grey:.4f}"]
    candidate = json.loads((ROOT / "benchmarks" / "results" / "trials" /
                            "small-pictures-fresh-small-0.4.json").read_text())["mnist"]
    assert small.check(candidate, 0.0) == ["scribble: 0.8610 flagged when sent small"]


def test_resolution_ceiling_short_mode(tmp_path):
    """benchmarks/resolution_ceiling.py --short: the shipped model and a native-resolution specialist on
    the same 8-px test pictures; exits 1 when the specialist reads below its bar."""
    out = tmp_path / "ceiling.json"
    proc = run("benchmarks/resolution_ceiling.py", "--short", "--data-dir", str(DATASETS), "--out", str(out),
               timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["short"] and not results["failures"] and list(results["kinds"]) == ["lowres-8"]
    e = results["kinds"]["lowres-8"]
    assert e["pictures"] == 300 and 0 < e["shipped_test"]["accuracy"] < 1
    ceiling = load_benchmark("resolution_ceiling")
    results["kinds"]["lowres-8"]["native_specialist_test"] = 0.5  # a broken specialist must trip the bar
    assert ceiling.check(results) == ["lowres-8: native specialist 0.5 < 0.9"]


def test_resolution_ceiling_rescore_keeps_the_specialists(tmp_path):
    """--rescore (a new release) re-scores the shipped model's columns and leaves the specialists' figures,
    which never read the shipped model, as they were measured."""
    saved = json.loads((ROOT / "benchmarks" / "results" / "resolution_ceiling.json").read_text())
    kind = "lowres-8"
    run_ = {**saved, "pictures": 100, "kinds": {kind: saved["kinds"][kind]},
            "model": "an-older-release", "created": "2026-01-01T00:00:00Z"}
    run_.pop("specialists_created", None)
    out = tmp_path / "ceiling.json"
    out.write_text(json.dumps(run_))
    proc = run("benchmarks/resolution_ceiling.py", "--rescore", "--data-dir", str(DATASETS), "--out", str(out),
               timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = json.loads(out.read_text())
    card = json.loads((ROOT / "models" / "mnist.json").read_text())
    assert after["model"] == card["version"] and after["specialists_created"] == "2026-01-01T00:00:00Z"
    e, before = after["kinds"][kind], saved["kinds"][kind]
    for key in ("native_specialist_test", "served_view_specialist_test"):
        assert e[key] == before[key], key
    assert e["shipped_test"]["samples"] == e["shipped_heldout_tail"]["samples"] == 100
    assert e["shipped_test"] != before["shipped_test"]  # 100 pictures, not the saved 1,000


def test_resolution_ceiling_table_in_the_docs_is_the_saved_run():
    """docs/model.md carries the table of results/resolution_ceiling.json (a full run on the shipped model)."""
    ceiling = load_benchmark("resolution_ceiling")
    results = json.loads((ROOT / "benchmarks" / "results" / "resolution_ceiling.json").read_text())
    card = json.loads((ROOT / "models" / "mnist.json").read_text())
    assert not results["short"] and not results["failures"] and results["model"] == card["version"]
    assert ceiling.write_doc(results, check=True) == 0, "run: python benchmarks/resolution_ceiling.py --doc"


def test_serif_ones_split_the_set_ood_scores(tmp_path):
    """A small run of benchmarks/serif_ones.py through the serving path: its glyphs partition the
    serif-1-crossed-7 set and its counts add up; docs/model.md carries the saved full run on the shipped model."""
    out = tmp_path / "serif.json"
    proc = run("benchmarks/serif_ones.py", "--n", "120", "--data-dir", str(DATASETS), "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kinds = json.loads(out.read_text())["kinds"]
    assert sum(k["pictures"] for k in kinds.values()) == 120 and all(k["pictures"] for k in kinds.values())
    for k in kinds.values():
        wrong = sum(k["misread_as"].values())
        assert wrong == round(k["pictures"] * (1 - k["accuracy"])) and k["misread_flagged"] <= wrong
    serif = load_benchmark("serif_ones")
    saved = json.loads((ROOT / "benchmarks" / "results" / "serif_ones.json").read_text())
    assert saved["model"] == json.loads((ROOT / "models" / "mnist.json").read_text())["version"] and saved["n"] == 1000
    assert serif.write_doc(saved, check=True) == 0, "run: python benchmarks/serif_ones.py --doc"


def test_seed_spread_table_is_the_saved_runs():
    """docs/model.md's run-to-run and trials tables are generated from the saved seed and trial runs, and
    the shipped model's ood.json run is marked in them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import seed_spread

    for folder in seed_spread.SPREADS:
        models = seed_spread.runs(folder)
        assert len({m["training_seed"] for m in models}) == len(models) >= 3, folder
        assert all(m["report"]["writers"].keys() == models[0]["report"]["writers"].keys() for m in models), folder
    # The shipped Fashion-MNIST model is one of its recipe's seeds.
    fashion = seed_spread.runs("seeds-fashion")
    assert [m["version"] for m in fashion if m.get("shipped")] == [seed_spread.shipped("fashion-mnist")["version"]]
    # The shipped recipe's spread holds the shipped run, and each seed's small-pictures run is of its weights.
    shipped_recipe = seed_spread.runs("seeds-fresh-small")
    assert [m["version"] for m in shipped_recipe if m.get("shipped")] == [seed_spread.shipped()["version"]]
    for m in shipped_recipe:
        folder, seed = seed_spread.RESULTS / "seeds-fresh-small", m["training_seed"]
        small = json.loads((folder / f"small-pictures-seed{seed}.json").read_text())
        assert small["mnist"]["version"] == m["version"] and not small["failures"] and not small["short"]
        serif = json.loads((folder / f"serif-ones-seed{seed}.json").read_text())
        assert serif["model"] == m["version"] and serif["n"] == 1000
    base, *trials = seed_spread.trials()
    live = seed_spread.shipped()
    assert trials and base["training_seed"] == live["training_seed"]
    assert [m["version"] for m in [base, *trials] if m.get("shipped")] == [live["version"]]
    for t in trials:  # a trial changes one thing: the seed and the evaluation sets are the base run's
        assert t["training_seed"] == base["training_seed"] and t["version"] != base["version"]
        assert t["report"]["writers"].keys() == base["report"]["writers"].keys() and "holdout" in t
        if t["version"] != live["version"] or "trial" in t:
            assert {"name", "recipe", "rule"} <= t["trial"].keys()
    assert seed_spread.main(["--check"]) == 0, "run: python benchmarks/seed_spread.py"
    # The wider network's prose quotes its saved runs: flag-only 1s and the ONNX Runtime cost per image.
    doc = " ".join((ROOT / "docs" / "model.md").read_text().split())
    wide = json.loads((seed_spread.RESULTS / "trials" / "vgg-wide" / "serif_ones.json").read_text())
    assert f"read at {wide['kinds']['1 with a flag only']['accuracy']:.1%}".replace("%", " %") in doc
    costs = [m["models"][0]["cost"]["without_ood_cpu_us"] for m in (
        json.loads((seed_spread.RESULTS / "trials" / "vgg-wide" / "ood.json").read_text()),
        json.loads((seed_spread.RESULTS / "ood.json").read_text()))]
    assert f"({costs[0]} µs against {costs[1]} µs" in doc


def test_readmes_verdict_table_is_the_saved_run():
    """README's summary of the verdict and the other-writer sets is generated from ood.json (a full run)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ood as ood_benchmark

    results = json.loads(ood_benchmark.OUT.read_text())
    assert not results["short"] and results["images_per_set"] >= 1000
    assert ood_benchmark.write_docs(results, check=True) == 0, "run: python benchmarks/ood.py --readme"
    assert all(m["version"] in ood_benchmark.readme_table(results) for m in results["models"])


def test_cpu_budget_classifies_stacks_by_their_outermost_stage():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cpu_budget import classify

    def f(func, path):
        return f"{func} ({path}:1)"

    waitress = f("HTTPChannel.service", "waitress/channel.py")  # py-spy's relative form ...
    hook = f("finish_request", "/repo/backend/web/app.py")  # ... and an absolute one
    log, dumps = f("info", "/py/logging/__init__.py"), f("dumps", "/py/json/__init__.py")
    assert classify([waitress, hook, log, dumps]) == "logging"  # the JSON inside the log line is logging
    assert classify([waitress, hook, f("inc", "/x/site-packages/prometheus_client/values.py")]) == "metrics"
    assert classify([waitress, f("open_image", "/repo/backend/model/decoding.py")]) == "decode"
    ort = f("run", "/x/onnxruntime/session.py")
    assert classify([f("_loop", "/repo/backend/model/inference.py"), ort]) == "inference"
    assert classify([waitress, f("_predict", "/repo/backend/web/api.py")]) == "postprocess"
    pipeline = "/repo/backend/serving/pipeline.py"
    assert classify([waitress, f("postprocess", pipeline), f("inc", "/x/prometheus_client/values.py")]) == "postprocess"
    decoding = f("open_image", "/repo/backend/model/decoding.py")
    assert classify([waitress, f("preprocess", pipeline), decoding]) == "decode"
    assert classify([waitress, f("load", pipeline)]) == "framework"
    assert classify([waitress, hook]) == "framework"
    assert classify([f("_bootstrap", "/py/threading.py")]) == "other"


def test_cpu_budget_short_run(tmp_path):
    """py-spy on the real server under wrk: every stage of a prediction shows up and the shares add up."""
    if not shutil.which("wrk"):
        pytest.fail("wrk is missing (apt-get install wrk; scripts/test.sh installs it)")
    out = tmp_path / "budget.json"
    proc = run("benchmarks/cpu_budget.py", "--label", "ci", "--duration", "2", "--concurrency", "8", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())["ci"]["runs"][0]
    assert r["samples"] > 100 and r["server_cpu_us_per_request"] > 0
    assert abs(sum(r["stages_share"].values()) - 1) < 0.01
    # Stages of ≥ ~5 % of a request; parsing (~0.5 %) gets no sample in a 2 s run as often as not.
    for stage in ("decode", "preprocess", "inference", "framework"):
        assert r["stages_us"][stage] > 0, stage


def test_stack_floor_short_mode(tmp_path):
    """The bare Waitress, Flask on Waitress and the real backend (1 worker), one short round each: every
    answer a 200, and the backend costs more than either floor. Whether Flask costs more than bare
    Waitress (~1.7× here) is not asked of one 2-s round: a busy moment once made bare Waitress 1.5× its
    usual cost and the order flipped. The saved full run holds that order (test_performance_doc)."""
    if not shutil.which("wrk"):
        pytest.fail("wrk is missing (apt-get install wrk; scripts/test.sh installs it)")
    out = tmp_path / "stack_floor.json"
    proc = run("benchmarks/stack_floor.py", "--short", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    for c in ("c8", "c32"):
        cpu = {k: v["cpu_us_per_request"] for k, v in results["summary"][c].items()}
        assert 0 < cpu["floor-waitress"] and 0 < cpu["floor-flask"], (c, cpu)
        assert max(cpu["floor-waitress"], cpu["floor-flask"]) < cpu["vision-1"], (c, cpu)


def test_peers_run_the_backends_onnx_runtime_settings():
    """The peers' shared handler copies the backend's session options (it runs in the peers' own
    venvs, without the backend on its path): the copy must stay equal, or the comparison is unfair."""
    from backend.model.inference import session_options

    spec = importlib.util.spec_from_file_location("peer_digits", ROOT / "benchmarks" / "peer_servers" / "digits.py")
    digits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digits)
    ours, theirs = session_options(), digits.session().get_session_options()
    for attr in ("intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level",
                 "log_severity_level"):
        assert getattr(theirs, attr) == getattr(ours, attr), attr
    for entry in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert theirs.get_session_config_entry(entry) == ours.get_session_config_entry(entry), entry
