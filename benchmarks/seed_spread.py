"""Run-to-run spread of the model recipes, and MNIST trial recipes read against it.

A spread: one recipe trained with several seeds, each measured by ``benchmarks/ood.py`` on the same sets
and saved as ``results/<folder>/<model>-seed<N>.json`` (``SPREADS``: ``seeds/`` is the MNIST recipe before
fresh small pictures, whose seed 2 was the previous release; ``seeds-fresh-small/`` is the shipped MNIST
recipe, whose seed 2 ships; ``seeds-fashion/`` the shipped Fashion-MNIST recipe, whose seed 1 ships). It
writes one table per recipe in docs/model.md, so a difference between two recipes can be read
against what a seed alone moves. Another table puts the earlier recipe's seed-2 run beside the trial recipes
(``results/trials/mnist-<name>.json``: an ``ood.py`` run plus a ``trial`` entry saying what changed),
trained with the same seed, and marks the one that ships (``results/ood.json``; appended if no trial is it).
Trials of the shipped recipe (``results/trials/<name>/ood.json``, ``SHIPPED_RECIPE_TRIALS``) get a table
each beside the shipped model's ``ood.json`` run, which is measured by the same code as the trial.

    .venv/bin/visionctl train mnist --seed 4 --models-dir /tmp/seed4          # ~25 min on 2 cores
    .venv/bin/python benchmarks/ood.py --models mnist --models-dir /tmp/seed4 \\
        --out benchmarks/results/seeds-fresh-small/mnist-seed4.json --docs /tmp/seed4
    .venv/bin/python benchmarks/seed_spread.py           # rewrites docs/model.md's tables from the saved runs
    .venv/bin/python benchmarks/seed_spread.py --check   # exit 1 if the tables are not the saved runs'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts")]

import docblock  # noqa: E402  (scripts/, the shared doc-block writer)

RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "model.md"
# The out-of-distribution families each model's tables list: the hardest ones for that model.
FAMILIES = {"mnist": ("glyph", "scribble", "digit-mashup"), "fashion-mnist": ("mnist-test", "glyph", "scribble")}
# Seed-run folder under results/ → (model, the docs/model.md block its table goes in); the earlier recipe first.
SPREADS = {"seeds": ("mnist", "seed-spread"), "seeds-fresh-small": ("mnist", "seed-spread-fresh-small"),
           "seeds-fashion": ("fashion-mnist", "seed-spread-fashion")}

# Trials of the shipped recipe, each in its block of docs/model.md (earlier trials predate the tables).
SHIPPED_RECIPE_TRIALS = ("vgg-wide",)


def _entry(path: Path, model: str = "mnist") -> dict:
    """One model's entry of a saved ``ood.py`` run, with the file's ``trial`` entry if it has one."""
    d = json.loads(path.read_text())
    return {**next(m for m in d["models"] if m["model"] == model), **({"trial": d["trial"]} if "trial" in d else {})}


def shipped(model: str = "mnist") -> dict:
    return {**_entry(RESULTS / "ood.json", model), "shipped": True}


def runs(folder: str = "seeds") -> list[dict]:
    """Every saved seed run of one recipe (``results/<folder>/``), ordered by training seed; the shipped
    model is marked if it is one of them."""
    model = SPREADS[folder][0]
    live = shipped(model)
    return sorted(({**m, "shipped": True} if m["version"] == live["version"] else m
                   for m in (_entry(p, model) for p in (RESULTS / folder).glob(f"{model}-seed*.json"))),
                  key=lambda m: m["training_seed"])


def trials() -> list[dict]:
    """The spread recipe's run with the shipped seed (what the trials change), then every saved trial run
    in the order they were measured, the shipped one marked; the shipped model last if it is neither."""
    live = shipped()
    base = next(m for m in runs() if m["training_seed"] == live["training_seed"])
    paths = sorted((RESULTS / "trials").glob("mnist-*.json"), key=lambda p: json.loads(p.read_text())["created"])
    tried = [{**m, "shipped": True} if m["version"] == live["version"] else m for m in map(_entry, paths)]
    return [base, *tried, *([] if any(m.get("shipped") for m in [base, *tried]) else [live])]


def _head(m: dict) -> str:
    what = f"trial {m['trial']['name']}" if "trial" in m else f"seed {m['training_seed']}"
    return f"{what}: `{m['version'][-8:]}`" + (" (shipped)" if m.get("shipped") else "")


def table(models: list[dict], spread: bool = True) -> str:
    def cells(values: list[float]) -> str:
        return " | ".join(f"{v:.2%}" for v in values) + (f" | {(max(values) - min(values)) * 100:.2f} pt"
                                                         if spread else "")

    heads = [_head(m) for m in models]
    model = models[0]["model"]
    rows = [(f"{'MNIST' if model == 'mnist' else 'Fashion-MNIST'} test accuracy",
             lambda m: m["report"]["test"]["accuracy"])]
    rows += [(name, lambda m, name=name: m["report"]["writers"][name]["accuracy"])
             for name in models[0]["report"]["writers"]]
    others = "other writers" if model == "mnist" else "other conditions"
    rows += [(f"**all {others}**", lambda m: m["report"]["writers_all"]["accuracy"]),
             (f"{others} flagged", lambda m: m["report"]["writers_all"]["flagged"])]
    rows += [(f"{fam} flagged", lambda m, fam=fam: m["report"]["families"][fam]["flagged"]) for fam in FAMILIES[model]]
    if all("holdout" in m for m in models):  # the data the threshold was fitted on: no evaluation uses it
        rows += [("held-out mix accuracy", lambda m: m["holdout"]["mix"]["accuracy"]),
                 ("held-out mix flagged", lambda m: m["holdout"]["mix"]["flagged"]),
                 ("validation outliers caught", lambda m: m["holdout"]["outliers_caught_mean"])]
    lines = ["| measured by `ood.py` | " + " | ".join(heads) + (" | spread |" if spread else " |"),
             "| --- |" + " ---: |" * (len(models) + spread)]
    lines += [f"| {label} | " + cells([get(m) for m in models]) + " |" for label, get in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/model.md's tables are not the saved runs'")
    args = p.parse_args(argv)
    status = 0
    tables = [(name, runs(folder), True) for folder, (_, name) in SPREADS.items()]
    tables.append(("trials", trials(), False))
    tables += [(name, [shipped(), _entry(RESULTS / "trials" / name / "ood.json")], False)
               for name in SHIPPED_RECIPE_TRIALS]
    for name, models, spread in tables:
        body = table(models, spread)
        if not args.check:
            print(body)
        status |= docblock.write(DOC, name, body, check=args.check, script="../benchmarks/seed_spread.py")
    return status


if __name__ == "__main__":
    sys.exit(main())
