"""Out-of-distribution verdicts, other-writer accuracy and calibration of the shipped models, measured
through the serving path (``backend.model.inference`` loads the model as the server does; every picture
goes through ``backend.model.preprocessing``), plus the ONNX Runtime cost of the OOD output.

    .venv/bin/python benchmarks/ood.py                  # 1000 images per set, saves results/ood.json,
                                                        # prints the tables docs/model.md quotes,
                                                        # draws docs/evaluation/<model>-reliability.png
    .venv/bin/python benchmarks/ood.py --short          # CI: 300 per set, exits 1 below the bars
    .venv/bin/python benchmarks/ood.py --readme         # only the generated tables (README's summary,
                                                        # docs/model.md's candidates and baseline)

Everything is at the threshold stored in each model card (fixed at export on held-out training
images, never on these sets). The evaluation sets are built by ``visionctl.ml.oodeval`` from MNIST /
Fashion-MNIST *test* images, held-out fonts and synthetic families, with seeds training never uses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import docblock  # noqa: E402  (scripts/, the shared doc-block writer)

from devkit.paths import DATASETS  # noqa: E402
from visionctl.ml import evaluation, ood, oodeval  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "ood.json"
README = ROOT / "README.md"
MODEL_DOC = ROOT / "docs" / "model.md"
MODELS = ("mnist", "fashion-mnist")

# Regression bars: the shipped recipe's lowest level over its seeds (docs/model.md, "Run-to-run spread"),
# rounded down, so a retrained model does not fail for its seed alone (the short mode allows SLACK more
# for sampling noise on 300 images). The targets are reported beside them (TARGETS);
# where a model is below a target the JSON says so instead of the bar pretending otherwise.
BARS = {
    "mnist": {"test_accuracy": 0.995, "test_in_distribution": 0.97, "test_ece": 0.015,
              "writers_accuracy": 0.97, "writers_ece": 0.03, "writers_flagged_max": 0.06,
              # seeds 1-3 of the shipped recipe: 8×8 scans 95.2-95.9 %, low resolution 92.9-93.4 %.
              "writer_sets": {"optdigits-8x8": 0.95, "lowres": 0.92},
              "families": {"uniform-noise": 0.98, "gaussian-noise": 0.98, "fashion-mnist-test": 0.95,
                           "photo-like": 0.95, "texture": 0.95, "gradient": 0.95, "blank": 0.95,
                           "glyph": 0.88, "scribble": 0.86, "digit-mashup": 0.8}},
    # Fashion-MNIST seeds 1-3: test 91.98-92.47 %, glyphs flagged 97.9-99.2 %.
    "fashion-mnist": {"test_accuracy": 0.915, "test_in_distribution": 0.97,
                      "families": {"uniform-noise": 0.98, "gaussian-noise": 0.98, "mnist-test": 0.95,
                                   "photo-like": 0.95, "texture": 0.95, "glyph": 0.95}},
}
TARGETS = {
    "mnist": {"test_accuracy": 0.993, "test_in_distribution": 0.97, "test_ece": 0.015, "writers_accuracy": 0.98,
              "writers_ece": 0.03, "writers_flagged_max": 0.05,
              "families": {"uniform-noise": 0.98, "gaussian-noise": 0.98, "fashion-mnist-test": 0.90}},
    "fashion-mnist": {"test_accuracy": 0.915, "test_in_distribution": 0.97, "families": {"mnist-test": 0.95}},
}
SLACK = 0.02


def predictor(model):
    def predict(images: np.ndarray):
        pred = model.predict(images)
        return pred.probs, pred.ood_score
    return predict


def ort_cost(onnx_path: Path, runs: int) -> dict:
    """CPU µs per single-image ONNX Runtime run (the server's session options) of the graph as shipped
    and of the same graph asked for the class output only (ORT then skips the OOD branch)."""
    import onnx
    import onnxruntime as ort

    from backend.model.inference import session_options

    model = onnx.load(str(onnx_path))
    names = [o.name for o in model.graph.output]
    no_ood = onnx.ModelProto()
    no_ood.CopyFrom(model)
    del no_ood.graph.output[1:]
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    arms = {}
    for label, proto, outputs in (("with_ood", model, names), ("without_ood", no_ood, names[:1])):
        sess = ort.InferenceSession(proto.SerializeToString(), sess_options=session_options(),
                                    providers=["CPUExecutionProvider"])
        for _ in range(200):
            sess.run(outputs, {"input": x})
        arms[label] = (sess, outputs)
    best = {label: [] for label in arms}
    for _ in range(5):  # rounds alternate the arms, so a busy moment costs both; the best of each counts
        for label, (sess, outputs) in arms.items():
            t = time.process_time()
            for _ in range(runs):
                sess.run(outputs, {"input": x})
            best[label].append((time.process_time() - t) / runs * 1e6)
    out = {f"{label}_cpu_us": round(min(times), 2) for label, times in best.items()}
    out["added_cpu_us"] = round(out["with_ood_cpu_us"] - out["without_ood_cpu_us"], 2)
    # Relative to a whole /predict (decode, preprocess, ORT, JSON) as benchmarks/hot_path.py measured it.
    hot = ROOT / "benchmarks" / "results" / "hot_path.json"
    if hot.is_file():
        per_request = next(r["cpu_us_per_request"] for r in json.loads(hot.read_text())["inproc"]
                           if r["path"] == "/predict")
        out["predict_cpu_us"] = per_request
        out["added_share_of_predict"] = round(out["added_cpu_us"] / per_request, 4)
    return out


def holdout(model, name: str, data: Path, n_valid: int = 400) -> dict:
    """The model on the data its threshold was fitted on (``oodfit``'s held-out mix) and its validation
    outliers: data no evaluation uses, so two releases can be compared on it without choosing between
    them by the evaluation sets. Accuracy and share flagged of the mix, share caught per outlier family."""
    from visionctl.ml import oodfit
    from visionctl.ml.data import load_split, split_holdout

    _, tail = split_holdout(load_split(name, "train", data))
    images, labels, desc = oodfit.holdout_mix(name, tail)
    threshold, predict = model.card.ood_threshold, predictor(model)
    caught = {fam: oodeval.flagged_share(oodeval.predict_all(predict, x)[1], threshold)
              for fam, x in oodfit.validation_outliers(name, tail, data, n_valid).items()}
    return {"mix": {**oodeval.scores_row(*oodeval.predict_all(predict, images), labels, threshold), "what": desc},
            "outliers_caught": caught, "outliers_caught_mean": round(float(np.mean(list(caught.values()))), 6)}


def check(name: str, rep: dict, slack: float, bars: dict | None = None) -> list[str]:
    bars, fails = bars or BARS[name], []

    def need(what, value, bar, higher=True):
        ok = value >= bar - slack if higher else value <= bar + slack
        if not ok:
            fails.append(f"{name}: {what} {value:.4f} {'<' if higher else '>'} bar {bar}")
    need("test accuracy", rep["test"]["accuracy"], bars["test_accuracy"])
    need("test kept in distribution", rep["test"]["in_distribution"], bars["test_in_distribution"])
    if "test_ece" in bars:
        need("test ECE", rep["test"]["ece"], bars["test_ece"], higher=False)
    if "writers_accuracy" in bars:
        w = rep["writers_all"]
        need("other-writer accuracy", w["accuracy"], bars["writers_accuracy"])
        need("other-writer ECE", w["ece"], bars["writers_ece"], higher=False)
        need("other writers flagged", w["flagged"], bars["writers_flagged_max"], higher=False)
    for fam, bar in bars["families"].items():
        need(f"{fam} flagged", rep["families"][fam]["flagged"], bar)
    for ws, bar in bars.get("writer_sets", {}).items():
        need(f"{ws} accuracy", rep["writers"][ws]["accuracy"], bar)
    return fails


def reliability(model, data, name: str, n: int) -> dict:
    """Confidence-bin data for the reliability diagram: the test set and all other-writer sets."""
    from visionctl.ml.data import load_split
    test = load_split(name, "test", data)
    sets = {"test": (test.images.astype(np.float32) / 255, test.labels)}
    writers = oodeval.writer_sets(name, data, n)
    if writers:
        sets["other writers"] = (np.concatenate([x for x, _ in writers.values()]),
                                 np.concatenate([y for _, y in writers.values()]))
    out = {}
    for label, (x, y) in sets.items():
        probs, _ = oodeval.predict_all(predictor(model), x)
        conf, correct = probs.max(1), probs.argmax(1) == y
        edges = np.linspace(0, 1, 16)
        idx = np.clip(np.digitize(conf, edges[1:-1]), 0, 14)
        out[label] = [{"confidence": float(conf[idx == b].mean()), "accuracy": float(correct[idx == b].mean()),
                       "count": int((idx == b).sum())} for b in range(15) if (idx == b).any()]
        out[label + " ECE"] = ood.ece(probs, y)
    return out


def plot_reliability(name: str, rel: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for label, marker in (("test", "o"), ("other writers", "s")):
        if label not in rel:
            continue
        rows = [r for r in rel[label] if r["count"] >= 5]
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker=marker,
                label=f"{label} (ECE {rel[label + ' ECE']:.2%})")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{name}: reliability (15 bins, bins with ≥ 5 images)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def tables(results: dict, level: int = 3) -> str:
    """Per model: every set and family, the resolution curve, the verdict's cost and the held-out mix."""
    lines = []
    for m in results["models"]:
        r = m["report"]
        head = f"{'#' * level} {m['model']} {m['version']}"
        lines += [f"{head} — method `{m['method']}`, threshold {m['threshold']:.4g}", "",
                  "| set | images | accuracy | ECE | flagged OOD |", "| --- | ---: | ---: | ---: | ---: |",
                  f"| {m['model']} test | {r['test']['samples']} | {r['test']['accuracy']:.2%} | "
                  f"{r['test']['ece']:.2%} | {r['test']['flagged']:.2%} |"]
        for name, row in r["writers"].items():
            lines.append(f"| {name} | {row['samples']} | {row['accuracy']:.2%} | {row['ece']:.2%} | "
                         f"{row['flagged']:.2%} |")
        if "writers_all" in r:
            w = r["writers_all"]
            lines.append(f"| **all other-writer sets** | {w['samples']} | **{w['accuracy']:.2%}** | {w['ece']:.2%} | "
                         f"{w['flagged']:.2%} |")
        lines += ["", "| OOD family | images | AUROC | flagged |", "| --- | ---: | ---: | ---: |"]
        for fam, row in r["families"].items():
            lines.append(f"| {fam} | {row['samples']} | {row['auroc']:.4f} | {row['flagged']:.2%} |")
        if "resolution" in m:
            res = m["resolution"]
            lines += ["", "Where reading stops: MNIST test digits area-averaged to one side (the `lowres` rendering "
                      f"at that side, sent small or re-upscaled), {next(iter(res.values()))['samples']:,} per side:",
                      "", "| digit side (px) | " + " | ".join(res) + " |", "| --- |" + " ---: |" * len(res),
                      "| accuracy | " + " | ".join(f"{r['accuracy']:.1%}" for r in res.values()) + " |",
                      "| flagged | " + " | ".join(f"{r['flagged']:.1%}" for r in res.values()) + " |"]
        c = m["cost"]
        share = (f", {c['added_share_of_predict']:.1%} of a whole /predict's {c['predict_cpu_us']} µs CPU"
                 if "predict_cpu_us" in c else "")
        lines += ["", f"ORT CPU per single-image run: {c['without_ood_cpu_us']} µs without the OOD output, "
                      f"{c['with_ood_cpu_us']} µs with it ({c['added_cpu_us']:+} µs{share}).", ""]
        if "holdout" in m:
            def held(h):
                return (f"accuracy {h['mix']['accuracy']:.2%}, flagged {h['mix']['flagged']:.2%}, validation outliers "
                        f"caught {h['outliers_caught_mean']:.2%}")
            base = results.get("baseline", {}).get(m["model"], {})
            lines += [f"Held-out mix ({m['holdout']['mix']['samples']:,} images the threshold was fitted on, never "
                      f"evaluated on): {held(m['holdout'])}" +
                      (f"; {base['version']}: {held(base['holdout'])}" if "holdout" in base else "") + ".", ""]
    return "\n".join(lines)


def noise_flagged(families: dict) -> float:
    """The share flagged of the worse of the two noise families."""
    return min(families["uniform-noise"]["flagged"], families["gaussian-noise"]["flagged"])


def other_dataset(families: dict) -> dict:
    """The row of the other dataset's test images (``fashion-mnist-test`` for MNIST and the reverse)."""
    return next(v for k, v in families.items() if k.endswith("-test"))


def readme_table(results: dict) -> str:
    """Per model, at the card's threshold: accuracy and calibration, and the share caught of the families
    a stranger is most likely to send (noise, the other dataset, pen strokes that are not digits)."""
    lines = ["| model | test accuracy / ECE | other writers: accuracy / ECE / flagged | noise flagged | "
             "other dataset flagged | glyphs / scribbles flagged | lowest AUROC |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in results["models"]:
        r, fam = m["report"], m["report"]["families"]
        w = r["writers_all"]
        worst = min(fam, key=lambda k: fam[k]["auroc"])
        lines.append(f"| `{m['model']}` {m['version']} | {r['test']['accuracy']:.2%} / {r['test']['ece']:.2%} | "
                     f"{w['accuracy']:.2%} / {w['ece']:.2%} / {w['flagged']:.2%} | "
                     f"{noise_flagged(fam):.1%} | {other_dataset(fam)['flagged']:.1%} | "
                     f"{fam['glyph']['flagged']:.1%} / {fam['scribble']['flagged']:.1%} | "
                     f"{fam[worst]['auroc']:.3f} ({worst}) |")
    return "\n".join(lines)


def methods_table(results: dict) -> str:
    """The OOD candidates export compared on validation outliers (the card's ``ood.methods``)."""
    lines = ["| model | candidate | worst family caught | mean caught | per family (validation) |",
             "| --- | --- | ---: | ---: | --- |"]
    for m in results["models"]:
        for method, r in m["methods_compared"].items():
            if method == "chosen":
                continue
            label = f"**{method}** (shipped)" if method == m["method"] else method
            families = ", ".join(f"{fam} {caught:.0%}" for fam, caught in r["caught"].items())
            lines.append(f"| {m['model']} | {label} | {r['worst_caught']:.1%} | {r['mean_caught']:.1%} | {families} |")
    return "\n".join(lines)


def baseline_table(results: dict) -> str:
    """Each shipped model beside the release it replaces (``--compare``), same sets and images."""
    def row(label: str, r: dict) -> str:
        fam = r["families"]
        cells = [r["test"]["in_distribution"], r["writers_all"]["accuracy"], r["writers_all"]["flagged"],
                 noise_flagged(fam), fam["photo-like"]["flagged"], fam["texture"]["flagged"],
                 other_dataset(fam)["flagged"], fam["glyph"]["flagged"]]
        mashups = f"{fam['digit-mashup']['flagged']:.2%}" if "digit-mashup" in fam else "—"
        return f"| {label} | " + " | ".join(f"{c:.2%}" for c in cells) + f" | {mashups} |"

    lines = ["| model | test kept | other-writer accuracy | other writers flagged | noise flagged (worse kind) | "
             "photo-like | texture | other dataset | glyphs | mash-ups |", "| --- |" + " ---: |" * 9]
    for m in results["models"]:
        base = results["baseline"][m["model"]]
        lines += [row(f"{m['model']} previous `{base['version']}`", base["report"]),
                  row(f"{m['model']} **shipped** `{m['version']}`", m["report"])]
    return "\n".join(lines)


def results_tables(results: dict) -> str:
    return tables(results, level=4).rstrip()


def cost_table(results: dict) -> str:
    lines = ["| model | ORT CPU per 1-image run, class output only | with `ood_score` | difference "
             "| share of a /predict |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for m in results["models"]:
        c = m["cost"]
        lines.append(f"| {m['model']} | {c['without_ood_cpu_us']} µs | {c['with_ood_cpu_us']} µs | "
                     f"{c['added_cpu_us']:+} µs | {c['added_share_of_predict']:+.1%} of {c['predict_cpu_us']} µs |")
    return "\n".join(lines)


# The generated tables: README's summary, and docs/model.md's candidates, per-model results and baseline.
BLOCKS = ((README, "ood-table", readme_table), (MODEL_DOC, "ood-methods", methods_table),
          (MODEL_DOC, "ood-results", results_tables), (MODEL_DOC, "ood-baseline", baseline_table),
          (MODEL_DOC, "ood-cost", cost_table))


def write_docs(results: dict, check: bool = False) -> int:
    """Rewrite (or with ``check``, compare) every generated table from the saved results."""
    stale = 0
    for doc, name, make in BLOCKS:
        stale |= docblock.write(doc, name, make(results), check=check, script="../benchmarks/ood.py --readme")
    return stale


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--models-dir`` and ``--data-dir`` with the defaults every model benchmark here shares."""
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--data-dir", default=str(DATASETS))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(p)
    p.add_argument("--n", type=int, default=1000, help="images per evaluation set")
    p.add_argument("--short", action="store_true", help="CI: 300 per set, 2000 test images, fail below the bars")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--readme", action="store_true",
                   help="only rewrite the generated tables (README, docs/model.md) from the saved JSON")
    p.add_argument("--docs", default=str(ROOT / "docs" / "evaluation"), help="where the reliability PNGs go")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--compare", metavar="DIR", help="also report the models in DIR (e.g. the previous release) "
                                                    "on the same sets, as the baseline")
    args = p.parse_args(argv)
    if args.readme:
        return write_docs(json.loads(Path(args.out).read_text()))
    n = 300 if args.short else args.n
    results = {"short": args.short, "images_per_set": n, "machine": f"{os.cpu_count()} CPUs, "
               f"Python {platform.python_version()}", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "models": []}
    failures = []
    for name in args.models.split(","):
        model = evaluation.load_model(name, args.models_dir)
        data = Path(args.data_dir) / name
        t = time.perf_counter()
        rep = oodeval.report(predictor(model), model.card.ood_threshold, name, data, n,
                             test_limit=2000 if args.short else 0)
        entry = {"model": name, "version": model.card.version, "training_seed": model.card.raw["training"]["seed"],
                 "method": model.card.ood_method,
                 "threshold": model.card.ood_threshold, "report": rep,
                 "methods_compared": model.card.raw["ood"].get("methods", {}),
                 "cost": ort_cost(Path(args.models_dir) / f"{name}.onnx", 300 if args.short else 3000),
                 "seconds": round(time.perf_counter() - t, 1)}
        if name == "mnist":
            entry["resolution"] = oodeval.resolution_curve(predictor(model), model.card.ood_threshold, data, n)
        if not args.short:
            entry["holdout"] = holdout(model, name, data)
            rel = reliability(model, data, name, n)
            entry["reliability"] = rel
            Path(args.docs).mkdir(parents=True, exist_ok=True)
            plot_reliability(name, rel, Path(args.docs) / f"{name}-reliability.png")
        results["models"].append(entry)
        failures += check(name, rep, SLACK if args.short else 0.0)
        entry["targets_missed"] = check(name, rep, 0.0, TARGETS[name])
        if args.compare:
            base = evaluation.load_model(name, args.compare)
            results.setdefault("baseline", {})[name] = {
                "version": base.card.version, "method": base.card.ood_method,
                "report": oodeval.report(predictor(base), base.card.ood_threshold, name, data, n,
                                         test_limit=2000 if args.short else 0)}
            if not args.short:
                results["baseline"][name]["holdout"] = holdout(base, name, data)
    results["failures"] = failures
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(tables(results))
    for f in failures:
        print("BELOW BAR:", f)
    print(f"saved {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
