"""docs/model.md's numbers are the measured ones: shipped accuracies from the model cards, the
fine-tuning strategies from benchmarks/results/finetune_strategies.json, the real-world variants from
benchmarks/results/variants.json (run by benchmarks/variants.py), the epochs from the training presets."""

from __future__ import annotations

import json
import re

from readme import doc
from repo import MODELS, ROOT

from visionctl.ml.pipeline import weights_provenance
from visionctl.ml.train_config import make_config

MODEL_DOC = doc("docs/model.md")
RESULTS = ROOT / "benchmarks" / "results"


def pct(value: float) -> str:
    return f"{value * 100:.2f} %"


def card(name: str) -> dict:
    return json.loads((ROOT / "models" / f"{name}.json").read_text())


def test_shipped_accuracies_and_epochs_are_the_cards():
    for name in ("mnist", "fashion-mnist"):
        row = next(line for line in MODEL_DOC.splitlines() if line.startswith(f"| `{name}` |"))
        metrics = card(name)["metrics"]
        assert f"**{pct(metrics['test_accuracy'])}**" in row, name
        assert f"{len(metrics['history'])} epochs" in row and len(metrics["history"]) == make_config(name).epochs


def test_the_shipped_models_are_the_presets_recipe():
    """`visionctl train <dataset>` with no options is the recipe the shipped model card records, and the
    shipped Fashion-MNIST model was fine-tuned from the very MNIST weights shipped beside it."""
    assert card("mnist")["training"] == make_config("mnist").to_dict()
    expected = {**make_config("fashion-mnist").to_dict(),
                "init_weights": weights_provenance(MODELS / "mnist.pt", MODELS)}
    assert card("fashion-mnist")["training"] == expected
    assert expected["init_weights"]["file"] == "mnist.pt"


def test_fine_tuning_strategies_are_the_saved_run():
    for result in json.loads((RESULTS / "finetune_strategies.json").read_text()):
        start = re.compile(rf"\| (\*\*)?`{re.escape(result['strategy'])}`")
        row = next(line for line in MODEL_DOC.splitlines() if start.match(line))
        assert pct(result["test_accuracy"]) in row, row


def test_real_world_variant_table_is_the_saved_run():
    table = MODEL_DOC.split("| MNIST variant", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
    saved = {m["model"]: m for m in json.loads((RESULTS / "variants.json").read_text())["models"]}
    for column, name in ((1, "mnist"), (3, "fashion-mnist")):
        documented = [row[column] for row in cells if row[column]]
        assert documented == [pct(v["accuracy"]) for v in saved[name]["variants"]], name
        # the doc names the model version the saved run measured, and says so when it is not the shipped one
        version = saved[name]["model_version"]
        assert f"{name} `{version}`" in MODEL_DOC, name
        if version != card(name)["version"]:
            assert "previous release" in MODEL_DOC.split("| MNIST variant", 1)[0][-600:], name
