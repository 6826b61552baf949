"""Small pictures through the serving path: how the low-resolution digits arrive, what preprocessing's
blocks step buys for each way, whether it lets small non-digits through, and what a second, looser
threshold for small pictures would cost. docs/model.md ("Small pictures", "Not reached") quotes it.

    .venv/bin/python benchmarks/small_pictures.py            # 1000 per set, saves results/small_pictures.json
    .venv/bin/python benchmarks/small_pictures.py --short    # CI: 300 per non-digit family, exits 1 below the bars
    .venv/bin/python benchmarks/small_pictures.py --compare DIR   # also the MNIST model in DIR, same pictures
    .venv/bin/python benchmarks/small_pictures.py --doc      # docs/model.md's delivery table from the saved JSON

Three measurements of the MNIST model, each at the model card's threshold unless named otherwise:

1. **Delivery.** The two low-resolution other-writer sets (``oodeval``'s renderings and seeds) split by
   how each picture arrives: small (under ``SMALL_SIDE``), as nearest-neighbour blocks, or smoothly
   enlarged. Accuracy and share flagged with the blocks step and without it.
2. **Small non-digits.** Every synthetic outlier family and Fashion-MNIST test items, shrunk to 8-16 px
   by area averaging and sent small or as blocks: the share flagged, with and without the step.
3. **Faint scans.** The 8×8 set's scans as grey levels 0-255 and as their ink counts 0-16 unscaled (grey
   levels no eye sees), sent small, as blocks or enlarged smoothly to 28 px: read and flagged with
   preprocessing's faint-picture rule and without it (faint pictures blank, as before the rule).
4. **A second threshold for small pictures**, fitted as the card's is (the same share kept) on held-out
   small renderings: the train file's held-out tail drawn by the same two renderers with the
   held-out mix's seed. The shares of small digits and small non-digits it flags, beside the card's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "scripts")]

import docblock  # noqa: E402  (scripts/, the shared doc-block writer)
import ood as ood_benchmark  # noqa: E402  (benchmarks/ood.py: the serving-path predictor)

from backend.model import preprocessing  # noqa: E402
from visionctl.ml import evaluation, ood, oodeval, synth  # noqa: E402
from visionctl.ml.data import load_split, split_holdout  # noqa: E402
from visionctl.ml.oodfit import HOLDOUT_SEED  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "small_pictures.json"
SETS = ("optdigits-8x8", "lowres")
RENDER = {"optdigits-8x8": synth.optdigits, "lowres": synth.lowres}
DELIVERIES = ("small", "blocks", "enlarged")

# Regression bars. The digit sets are the same 1,000 pictures in both modes (deterministic), so the
# step's effect on blocks has no slack; the short mode draws 300 non-digits per family and allows SLACK
# on their share flagged. What the step is for: a digit sent as blocks is judged as if sent small. So with
# the step, blocks may be flagged at most ``blocks_vs_small_digits`` more often than the same set's
# pictures sent small (one picture is 0.7-0.8 points of the blocks groups), and never more often than
# without the step; and the step costs no accuracy (its gain moves with the training run: +6.5 / +6.1
# points with seed 1, +3.3 / +0.7 with seed 2, on 124 / 149 pictures). An earlier bar asked the step to cut
# the blocks flagged by 10 points; a model that reads blocks well without it (fresh small pictures in
# training: 11.3 % flagged without the step) cannot show that, though the blocks are judged as before.
# A blocky non-digit is judged as its small self unless it is too flat for the step (a few per
# thousand: a filled region fits a coarse grid, see ``undo_block_upscale``), hence blocks_vs_small.
BARS = {"blocks_accuracy_gain": 0.0, "blocks_flagged_cut": 0.0, "blocks_vs_small_digits": 0.03,
        "small_nondigits_flagged": 0.88, "blocks_vs_small": 0.01}
SLACK = 0.03
# A scan's counts 0-16 are read as the same scan in 0-255 is, within this (one picture is 0.1 point).
FAINT_VS_GREY = {"accuracy": 0.02, "flagged": 0.03}


@contextlib.contextmanager
def blocks_step(on: bool):
    """Preprocessing as served (``on``) or with ``undo_block_upscale`` skipped: the ablation."""
    if on:
        yield
        return
    with mock.patch.object(preprocessing, "undo_block_upscale", lambda gray: gray):
        yield


@contextlib.contextmanager
def faint_rule(on: bool):
    """Preprocessing as served (``on``), or with faint pictures blank as before the rule: the ablation."""
    if on:
        yield
        return
    with mock.patch.object(preprocessing, "spread_faint", lambda small: small), \
            mock.patch.object(preprocessing, "pixel_noise", lambda a: float("inf")):
        yield


def scan_forms(grid: np.ndarray) -> dict[str, Image.Image]:
    """One 8×8 scan (0-255, ink bright) the ways a client may send it; each ``counts`` form has the
    ``grey`` form it is compared with in ``FAINT_PAIRS``."""
    grey = Image.fromarray(np.uint8(np.round(grid)))
    counts = Image.fromarray(np.uint8(np.round(grid / 255 * 16)))
    return {"grey 0-255": grey, "grey 0-255, enlarged smoothly": grey.resize((28, 28), Image.BICUBIC),
            "counts 0-16": counts, "counts 0-16, as blocks": as_blocks(counts),
            "counts 0-16, enlarged smoothly": counts.resize((28, 28), Image.BICUBIC)}


FAINT_PAIRS = {"counts 0-16": "grey 0-255", "counts 0-16, as blocks": "grey 0-255",
               "counts 0-16, enlarged smoothly": "grey 0-255, enlarged smoothly"}


def delivery(img: Image.Image) -> str:
    """How a picture reaches the service: small, as blocks of a small picture, or enlarged otherwise."""
    gray = preprocessing.to_grayscale(img)
    if gray is None or max(gray.size) < preprocessing.SMALL_SIDE:
        return "small"
    return "blocks" if preprocessing.undo_block_upscale(gray).size != gray.size else "enlarged"


def preprocessed(pictures: list[Image.Image], on: bool = True) -> np.ndarray:
    with blocks_step(on):
        return np.stack([preprocessing.preprocess(p, "digit") for p in pictures])


def as_blocks(img: Image.Image) -> Image.Image:
    """Nearest-neighbour enlargement to about 112 px, as a client's viewer or upscaler sends it."""
    k = max(2, 112 // max(img.size))
    return img.resize((img.width * k, img.height * k), Image.NEAREST)


def writer_pictures(data: Path, n: int) -> dict[str, tuple[list[Image.Image], np.ndarray]]:
    """The low-resolution other-writer sets as pictures: the renderings and seeds of ``oodeval``."""
    test = load_split("mnist", "test", data)
    return {name: ([RENDER[name](d, synth.rng_for(oodeval.EVAL_SEED, name, i)) for i, d in enumerate(test.images[:n])],
                   test.labels[:n]) for name in SETS}


def nondigit_pictures(data: Path, n: int) -> dict[str, list[Image.Image]]:
    """Each outlier family and Fashion-MNIST test items, shrunk to 8-16 px (sent small)."""
    out = {}
    for name, render in synth.NOISE_FAMILIES.items():
        out[name] = [synth.shrink(render(synth.rng_for(oodeval.EVAL_SEED, name, i)),
                            synth.rng_for(oodeval.EVAL_SEED, f"shrink-{name}", i)) for i in range(n)]
    fashion = load_split("fashion-mnist", "test", data.parent / "fashion-mnist")
    out["fashion-mnist-test"] = [synth.shrink(Image.fromarray(x), synth.rng_for(oodeval.EVAL_SEED, "shrink-fashion", i))
                                 for i, x in enumerate(fashion.images[:n])]
    return out


def heldout_small(data: Path, n: int) -> list[Image.Image]:
    """Held-out digits (the train file's tail, never trained on) drawn by the two low-resolution
    renderers with the held-out mix's seed, kept where they reach preprocessing small or as blocks."""
    _, tail = split_holdout(load_split("mnist", "train", data))
    out = []
    for i, d in enumerate(tail.images[:n]):
        name = SETS[i % 2]
        picture = RENDER[name](d, synth.rng_for(HOLDOUT_SEED, f"small-{name}", i))
        if delivery(picture) != "enlarged":
            out.append(picture)
    return out


def measure(model, data: Path, n: int, n_nondigits: int) -> dict:
    predict = ood_benchmark.predictor(model)
    threshold = model.card.ood_threshold
    out: dict = {"version": model.card.version, "threshold": threshold, "delivery": {}, "nondigits": {}}

    small_digits = ([], [], [])  # probs, scores, labels of the pictures that arrive small or as blocks, step on
    for name, (pictures, labels) in writer_pictures(data, n).items():
        kinds = np.array([delivery(p) for p in pictures])
        out["delivery"][name] = {}
        for kind in DELIVERIES:
            pick = np.flatnonzero(kinds == kind)
            entry = {}
            for on in (True, False):
                key = "with_step" if on else "without_step"
                if not len(pick):
                    entry[key] = {"samples": 0}
                    continue
                probs, scores = oodeval.predict_all(predict, preprocessed([pictures[i] for i in pick], on))
                entry[key] = oodeval.scores_row(probs, scores, labels[pick], threshold)
                if on and kind != "enlarged":
                    for part, values in zip(small_digits, (probs, scores, labels[pick]), strict=True):
                        part.append(values)
            out["delivery"][name][kind] = entry

    # The 8×8 set's scans (its grids: the renderer draws them first from the same generator), as many
    # as each non-digit family has: 300 in the short mode.
    test = load_split("mnist", "test", data)
    n_scans = n_nondigits
    forms = [scan_forms(synth.optdigits_grid(d, synth.rng_for(oodeval.EVAL_SEED, "optdigits-8x8", i)))
             for i, d in enumerate(test.images[:n_scans])]
    out["scan_forms"] = {}
    for form in forms[0]:
        out["scan_forms"][form] = {}
        for on in (True, False):
            with faint_rule(on):
                probs, scores = oodeval.predict_all(predict, preprocessed([f[form] for f in forms]))
            out["scan_forms"][form]["with_rule" if on else "without_rule"] = oodeval.scores_row(
                probs, scores, test.labels[:n_scans], threshold)

    nondigit_scores = {}
    for name, pictures in nondigit_pictures(data, n_nondigits).items():
        entry = {}
        for how, sent in (("small", pictures), ("blocks", [as_blocks(p) for p in pictures])):
            for on in ((True, False) if how == "blocks" else (True,)):
                _, scores = oodeval.predict_all(predict, preprocessed(sent, on))
                entry[f"{how}_with_step" if on else f"{how}_without_step"] = {
                    "flagged": oodeval.flagged_share(scores, threshold), "samples": int(len(scores))}
                if how == "small":
                    nondigit_scores[name] = scores
        out["nondigits"][name] = entry

    # The looser threshold a second, small-picture verdict would use, and what it would flag.
    held = heldout_small(data, n * 4)
    _, held_scores = oodeval.predict_all(predict, preprocessed(held))
    small_threshold = ood.fit_threshold(held_scores)
    probs, scores, labels = (np.concatenate(x) for x in small_digits)
    out["second_threshold"] = {
        "fitted_on": f"{len(held)} held-out small renderings (train file's tail, seed {HOLDOUT_SEED})",
        "threshold": round(small_threshold, 6), "card_threshold": threshold,
        "flat_prediction_score": round(float(np.log(10)), 6),
        "small_digits": {"card": oodeval.scores_row(probs, scores, labels, threshold),
                         "second": oodeval.scores_row(probs, scores, labels, small_threshold)},
        "small_nondigits_flagged": {name: {"card": oodeval.flagged_share(s, threshold),
                                           "second": oodeval.flagged_share(s, small_threshold)}
                                    for name, s in nondigit_scores.items()},
    }
    return out


def check(m: dict, slack: float) -> list[str]:
    """The step keeps helping blocks, a blocky non-digit is judged as its small self, and small
    non-digits stay flagged."""
    fails = []
    for name, kinds in m["delivery"].items():
        on, off = kinds["blocks"]["with_step"], kinds["blocks"]["without_step"]
        if not on["samples"]:
            fails.append(f"{name}: no picture arrived as blocks")
            continue
        if on["accuracy"] - off["accuracy"] < BARS["blocks_accuracy_gain"]:
            fails.append(f"{name}: blocks read {on['accuracy']:.4f} with the step, {off['accuracy']:.4f} without")
        if off["flagged"] - on["flagged"] < BARS["blocks_flagged_cut"]:
            fails.append(f"{name}: blocks flagged {on['flagged']:.4f} with the step, {off['flagged']:.4f} without")
        small = kinds["small"]["with_step"]
        if on["flagged"] - small["flagged"] > BARS["blocks_vs_small_digits"]:
            fails.append(f"{name}: blocks flagged {on['flagged']:.4f} with the step, {small['flagged']:.4f} sent small")
    forms = m.get("scan_forms", {})  # runs saved before the faint rule have none
    for faint, grey in FAINT_PAIRS.items() if forms else ():
        f, g = forms[faint]["with_rule"], forms[grey]["with_rule"]
        for key, allowed in FAINT_VS_GREY.items():
            if abs(f[key] - g[key]) > allowed:
                fails.append(f"scans as {faint}: {key} {f[key]:.4f}, as {grey}: {g[key]:.4f}")
    for name, entry in m["nondigits"].items():
        if name == "blank":  # shrunk blanks are blank at any size; the family is there for completeness
            continue
        small, blocks = entry["small_with_step"], entry["blocks_with_step"]
        if small["flagged"] < BARS["small_nondigits_flagged"] - slack:
            fails.append(f"{name}: {small['flagged']:.4f} flagged when sent small")
        if abs(blocks["flagged"] - small["flagged"]) > BARS["blocks_vs_small"]:
            fails.append(f"{name}: {blocks['flagged']:.4f} flagged as blocks, {small['flagged']:.4f} sent small")
    return fails


def tables(results: dict) -> str:
    lines = []
    for label, m in (("shipped", results["mnist"]), ("compared", results.get("baseline"))):
        if not m:
            continue
        lines += [f"### MNIST {m['version']} ({label}), threshold {m['threshold']:.4g}", "",
                  "| set | arrives | pictures | accuracy with / without the blocks step | flagged with / without |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for name, kinds in m["delivery"].items():
            for kind, e in kinds.items():
                on, off = e["with_step"], e["without_step"]
                if on["samples"]:
                    lines.append(f"| {name} | {kind} | {on['samples']} | {on['accuracy']:.1%} / "
                                 f"{off['accuracy']:.1%} | {on['flagged']:.1%} / {off['flagged']:.1%} |")
        lines += ["", "| non-digit shrunk to 8–16 px | flagged sent small | as blocks, with / without the step |",
                  "| --- | ---: | ---: |"]
        for name, e in m["nondigits"].items():
            lines.append(f"| {name} | {e['small_with_step']['flagged']:.1%} | {e['blocks_with_step']['flagged']:.1%} / "
                         f"{e['blocks_without_step']['flagged']:.1%} |")
        s = m["second_threshold"]
        d = s["small_digits"]
        lines += ["", f"Second threshold for small pictures: {s['threshold']:.4g} (card {s['card_threshold']:.4g}; "
                      f"a flat prediction scores {s['flat_prediction_score']:.4g}), fitted on {s['fitted_on']}.", "",
                  "| at the | small digits read | small digits flagged | " +
                  " | ".join(f"{k} flagged" for k in s["small_nondigits_flagged"]) + " |",
                  "| --- | ---: | ---: |" + " ---: |" * len(s["small_nondigits_flagged"])]
        for which in ("card", "second"):
            lines.append(f"| {which} threshold | {d[which]['accuracy']:.1%} | {d[which]['flagged']:.1%} | " +
                         " | ".join(f"{v[which]:.1%}" for v in s["small_nondigits_flagged"].values()) + " |")
        lines.append("")
    return "\n".join(lines)


def _change(off: float, on: float) -> str:
    """A share without → with an ablated step, or the one share when they print the same."""
    return f"{on:.1%}" if f"{off:.1%}" == f"{on:.1%}" else f"{off:.1%} → {on:.1%}"


def delivery_table(results: dict) -> str:
    """docs/model.md's table: each way a low-resolution picture arrives, read and flagged without → with
    the blocks step, for the shipped model and (``--compare``) the previous release."""
    models = [("shipped", results["mnist"]), *([("previous", results["baseline"])] if "baseline" in results else [])]

    def change(e: dict, key: str) -> str:
        return _change(e["without_step"][key], e["with_step"][key])

    heads = " | ".join(f"{what} `{m['version'][-8:]}`" for what, m in models)
    lines = [f"| set, as it arrives | pictures | read without → with the step: {heads} | flagged: {heads} |",
             "| --- | ---: |" + " ---: |" * (2 * len(models))]
    for name, kinds in results["mnist"]["delivery"].items():
        for kind, e in kinds.items():
            if e["with_step"]["samples"]:
                cells = [change(m["delivery"][name][kind], "accuracy") for _, m in models]
                cells += [change(m["delivery"][name][kind], "flagged") for _, m in models]
                lines.append(f"| {name}, {kind} | {e['with_step']['samples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def faint_table(results: dict) -> str:
    """docs/model.md's table: the 8×8 scans in each form, read and flagged without → with the faint rule."""
    m = results["mnist"]

    def change(e: dict, key: str) -> str:
        return _change(e["without_rule"][key], e["with_rule"][key])

    lines = [f"| 8×8 scans (`{m['version'][-8:]}`), sent as | pictures | read without → with the faint rule | "
             "flagged without → with |", "| --- | ---: | ---: | ---: |"]
    for form, e in m["scan_forms"].items():
        lines.append(f"| {form} | {e['with_rule']['samples']} | {change(e, 'accuracy')} | {change(e, 'flagged')} |")
    return "\n".join(lines)


def write_doc(results: dict, check: bool = False) -> int:
    doc, script = ROOT / "docs" / "model.md", "../benchmarks/small_pictures.py --doc"
    return (docblock.write(doc, "small-pictures", delivery_table(results), check=check, script=script)
            | docblock.write(doc, "faint-scans", faint_table(results), check=check, script=script))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ood_benchmark.add_model_args(p)
    p.add_argument("--n", type=int, default=1000, help="pictures per digit set and per non-digit family")
    p.add_argument("--short", action="store_true", help="CI: 300 per non-digit family, fail below the bars")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--compare", metavar="DIR", help="also measure the MNIST model in DIR on the same pictures")
    p.add_argument("--doc", action="store_true", help="only rewrite docs/model.md's delivery table from --out")
    args = p.parse_args(argv)
    if args.doc:
        return write_doc(json.loads(Path(args.out).read_text()))
    n, n_nondigits = args.n, min(300, args.n) if args.short else args.n
    data = Path(args.data_dir) / "mnist"
    t = time.perf_counter()
    results = {"short": args.short, "per_set": n, "per_nondigit_family": n_nondigits,
               "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "mnist": measure(evaluation.load_model("mnist", args.models_dir), data, n, n_nondigits)}
    if args.compare:
        results["baseline"] = measure(evaluation.load_model("mnist", args.compare), data, n, n_nondigits)
    results["failures"] = check(results["mnist"], SLACK if args.short else 0.0)
    results["seconds"] = round(time.perf_counter() - t, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(tables(results))
    for f in results["failures"]:
        print("BELOW BAR:", f)
    print(f"saved {out} ({results['seconds']} s)")
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
