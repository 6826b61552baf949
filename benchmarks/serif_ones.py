"""Serif 1s and crossed 7s by glyph: where the serif-1-crossed-7 set's misreadings are.

    .venv/bin/python benchmarks/serif_ones.py          # saves results/serif_ones.json, rewrites docs/model.md's table
    .venv/bin/python benchmarks/serif_ones.py --doc    # only the table, from the saved JSON

The set ``benchmarks/ood.py`` scores (``oodeval.serif_set``: the first 1,000 1s and 7s of MNIST *test*),
through the serving path, split by what each picture carries: a 1 with a flag and a foot, a 1 with a flag
only, a crossed 7. For each: accuracy, share flagged, what the misread ones were read as, how many of them
the verdict flagged and how sure the model was of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "scripts")]

import docblock  # noqa: E402  (scripts/, the shared doc-block writer)
import ood as ood_benchmark  # noqa: E402  (benchmarks/ood.py: the serving-path predictor)

from visionctl.ml import evaluation, oodeval  # noqa: E402
from visionctl.ml.data import load_split  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "serif_ones.json"


def measure(model, data_dir, n: int) -> dict:
    images, labels, kinds = oodeval.serif_set(load_split("mnist", "test", data_dir), n)
    probs, scores = oodeval.predict_all(ood_benchmark.predictor(model), images)
    pred, flagged = probs.argmax(1), oodeval.flagged(scores, model.card.ood_threshold)
    out = {}
    for k, kind in enumerate(oodeval.SERIF_KINDS):
        sel = kinds == k
        wrong = sel & (pred != labels)
        out[kind] = {"pictures": int(sel.sum()), "accuracy": round(float((pred[sel] == labels[sel]).mean()), 4),
                     "flagged": round(float(flagged[sel].mean()), 4),
                     "misread_as": {str(c): int(m) for c, m in Counter(pred[wrong].tolist()).most_common()},
                     "misread_flagged": int(flagged[wrong].sum()),
                     "misread_confidence_median": round(float(np.median(probs[wrong].max(1))), 3)
                     if wrong.any() else None}
    return out


def table(results: dict) -> str:
    lines = [f"Shipped `{results['model'][-8:]}`, threshold {results['threshold']:.4f}, the set's first "
             f"{sum(r['pictures'] for r in results['kinds'].values()):,} pictures:", "",
             "| glyph | pictures | read | flagged | misread as | misread and flagged | misread: median confidence |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for kind, r in results["kinds"].items():
        wrong = sum(r["misread_as"].values())
        read_as = ", ".join(f"{c} ×{m}" for c, m in r["misread_as"].items()) or "—"
        conf = "—" if r["misread_confidence_median"] is None else f"{r['misread_confidence_median']:.2f}"
        lines.append(f"| {kind} | {r['pictures']} | {r['accuracy']:.1%} | {r['flagged']:.1%} | {read_as} | "
                     f"{r['misread_flagged']} of {wrong} | {conf} |")
    return "\n".join(lines)


def write_doc(results: dict, check: bool = False) -> int:
    return docblock.write(ROOT / "docs" / "model.md", "serif-ones", table(results), check=check,
                          script="../benchmarks/serif_ones.py --doc")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ood_benchmark.add_model_args(p)
    p.add_argument("--n", type=int, default=1000, help="pictures (the set ood.py scores has 1,000)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--doc", action="store_true", help="only rewrite docs/model.md's table from --out")
    args = p.parse_args(argv)
    if args.doc:
        return write_doc(json.loads(Path(args.out).read_text()))
    model = evaluation.load_model("mnist", args.models_dir)
    results = {"model": model.card.version, "threshold": model.card.ood_threshold, "n": args.n,
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "kinds": measure(model, args.data_dir, args.n)}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"saved {args.out}")
    if args.n == 1000 and Path(args.out).resolve() == OUT.resolve():
        write_doc(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
