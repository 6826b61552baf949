"""backend.model.card: build → write → read, every refusal names the file and the problem, and the
shipped cards load byte-for-byte as written."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from backend.errors import ModelLoadError
from backend.model import card as modelcard
from devkit.backend_server import test_model_dir

SHIPPED = ("mnist", "fashion-mnist")


def built(name: str = "mnist", **overrides) -> modelcard.ModelCard:
    args = dict(
        name=name, description="test card", labels=[str(i) for i in range(10)], preprocessing="digit",
        mean=0.1307, std=0.3081, input_name="input", output_name="log_probs",
        accuracy=0.98765432, samples=10000, per_class_accuracy=[0.9] * 10, history=[{"epoch": 1}],
        data_sha256={"t10k-images-idx3-ubyte": "0" * 64}, training={"epochs": 1},
        export={"opset": 17, "parity_max_abs_diff": 1e-7},
        artifacts={"onnx": (f"{name}.onnx", "ab" * 32), "pt": (f"{name}.pt", "cd" * 32)},
        created=dt.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=dt.UTC), ood=ood_section())
    return modelcard.build(**{**args, **overrides})


def ood_section(**overrides) -> dict:
    return {"method": "energy", "output": "ood_score", "threshold": -7.5, "fitted_on": "held-out train images",
            "target_in_distribution": 0.975,
            "baseline": {"ood_share": 0.025, "class_share": {str(i): 0.1 for i in range(10)}},
            "evaluation": {}, **overrides}


def shipped_raw(name: str) -> dict:
    return json.loads((test_model_dir() / f"{name}.json").read_text())


def test_build_write_read_round_trip(tmp_path):
    card = built()
    assert card.version == "2026.01.02-abababab"  # creation date + the ONNX hash
    assert card.raw["created"] == "2026-01-02T03:04:05+00:00"
    assert card.raw["metrics"]["test_accuracy"] == 0.987654
    assert card.raw["metrics"]["per_class_accuracy"]["7"] == 0.9
    modelcard.write(tmp_path / "mnist.json", card)
    again = modelcard.read(tmp_path / "mnist.json")
    assert again == card and again.to_dict() == card.raw
    assert oct(os.stat(tmp_path / "mnist.json").st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["mnist.json"]  # no temporary file left behind


def test_ood_section_is_parsed():
    card = built()
    assert (card.ood_output, card.ood_threshold, card.ood_method) == ("ood_score", -7.5, "energy")
    assert card.ood_baseline == {"ood_share": 0.025, "class_share": {str(i): 0.1 for i in range(10)}}
    assert card.raw["ood"]["fitted_on"] == "held-out train images"


def test_to_dict_is_a_copy():
    card = built()
    card.to_dict()["labels"][0] = "changed"
    assert card.labels[0] == "0" and card.raw["labels"][0] == "0"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_load_and_rebuild_byte_for_byte(name):
    """The format is the one the committed cards have: rebuilding one from its own fields gives
    the identical file, so nothing needs regenerating."""
    path = test_model_dir() / f"{name}.json"
    card = modelcard.read(path)
    raw = card.raw
    assert card.name == name and len(card.labels) == 10 and card.std > 0
    metrics = raw["metrics"]
    rebuilt = modelcard.build(
        name=name, description=raw["description"], labels=card.labels, preprocessing=card.preprocessing,
        mean=card.mean, std=card.std, input_name=card.input_name, output_name=card.output_name,
        output_kind=card.output_kind, accuracy=metrics["test_accuracy"], samples=metrics["test_samples"],
        per_class_accuracy=list(metrics["per_class_accuracy"].values()), history=metrics["history"],
        data_sha256=raw["data"]["sha256"], training=raw["training"], export=raw["export"],
        artifacts={kind: (a["file"], a["sha256"]) for kind, a in raw["artifacts"].items()},
        created=dt.datetime.fromisoformat(raw["created"]), ood=raw["ood"])
    assert modelcard.dumps(rebuilt) == path.read_bytes()
    onnx = (test_model_dir() / f"{name}.onnx").read_bytes()
    modelcard.check_artifact(card, "onnx", onnx, f"{name}.onnx")
    assert modelcard.sha256_file(test_model_dir() / f"{name}.onnx") == card.artifact_sha256("onnx")


def test_the_schemas_preprocessing_modes_are_the_ones_cards_and_the_preprocessor_accept(repo_root, tmp_path):
    """By behaviour, not by comparing names: every mode the published schema allows gives a card that
    writes and reads back and an image the preprocessor handles (each mode its own way); a mode
    outside the schema is refused by both."""
    import numpy as np
    from PIL import Image

    from backend.model.preprocessing import preprocess

    schema = json.loads((repo_root / "docs" / "model-card.schema.json").read_text())
    modes = schema["properties"]["input"]["properties"]["preprocessing"]["enum"]
    canvas = np.zeros((56, 84), np.uint8)
    canvas[4:20, 6:12] = 255  # a small stroke in a corner of a wide frame
    image = Image.fromarray(canvas)
    outputs = []
    for mode in modes:
        modelcard.write(tmp_path / "mnist.json", built(preprocessing=mode))
        assert modelcard.read(tmp_path / "mnist.json").preprocessing == mode
        outputs.append(preprocess(image, mode))
        assert outputs[-1].shape == (28, 28) and outputs[-1].max() > 0.5
    assert len(modes) >= 2 and not np.allclose(outputs[0], outputs[1])  # the modes differ
    for mode in ("zoom", modes[0].upper()):
        with pytest.raises(ValueError, match="unknown preprocessing mode"):
            preprocess(image, mode)
        with pytest.raises(ModelLoadError, match="input.preprocessing must be one of"):
            modelcard.write(tmp_path / "other.json", built(preprocessing=mode))
            modelcard.read(tmp_path / "other.json")


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(labels=c["labels"][:9]), "expected 10 labels, found 9"),
    (lambda c: c["input"].update(preprocessing="zoom"), "input.preprocessing must be one of ('digit', 'frame'), "
                                                        "not 'zoom'"),
    (lambda c: c["normalization"].update(std=0), "normalization.std must be > 0"),
    (lambda c: c["normalization"].update(std="wide"), "malformed model card (ValueError"),
    (lambda c: c.pop("normalization"), "malformed model card (KeyError: 'normalization')"),
    (lambda c: c.update(output="log_probs"), "malformed model card"),
    (lambda c: c["output"].update(kind="sigmoid"), "unknown output.kind 'sigmoid'"),
    (lambda c: c.update(name="other"), "card is for model 'other', expected 'mnist'"),
    (lambda c: c.pop("ood"), "model card has no 'ood' section"),
    (lambda c: c["ood"].update(threshold=float("nan")), "ood.threshold must be a finite number"),
    (lambda c: c["ood"].update(target_in_distribution=0), "ood.target_in_distribution must be in (0, 1]"),
    (lambda c: c["ood"].update(output="log_probs"), "ood.output must differ from output.name"),
    (lambda c: c["ood"]["baseline"]["class_share"].pop("7"), "one share per label"),
    (lambda c: c["ood"].pop("baseline"), "malformed model card (KeyError: 'baseline')"),
])
def test_inconsistent_cards_are_refused_with_the_reason(tmp_path, mutate, message):
    raw = shipped_raw("mnist")
    mutate(raw)
    path = tmp_path / "mnist.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(modelcard.CardError) as exc:
        modelcard.read(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)
    assert isinstance(exc.value, ModelLoadError)  # what the backend's loader and server handle


@pytest.mark.parametrize("content, message", [
    ("{not json", "unreadable model card"),
    (b"\xff\xfe", "unreadable model card"),
    ("[1, 2]", "model card must be a JSON object"),
])
def test_unreadable_cards_are_refused(tmp_path, content, message):
    path = tmp_path / "mnist.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(modelcard.CardError, match=message):
        modelcard.read(path)
    with pytest.raises(modelcard.CardError, match="unreadable model card"):
        modelcard.read(tmp_path / "missing.json")


def test_build_refuses_what_read_would_refuse():
    with pytest.raises(modelcard.CardError, match="input.preprocessing"):
        built(preprocessing="zoom")
    with pytest.raises(modelcard.CardError, match="std must be > 0"):
        built(std=-1.0)
    with pytest.raises(ValueError):  # one accuracy per label
        built(per_class_accuracy=[0.9] * 9)


def test_artifact_hash_mismatch_is_refused():
    card = built()
    with pytest.raises(modelcard.CardError, match=r"x\.onnx: sha256 does not match"):
        modelcard.check_artifact(card, "onnx", b"not the model", "x.onnx")
    no_hash = modelcard.parse({**card.to_dict(), "artifacts": {}}, "hand-made")
    modelcard.check_artifact(no_hash, "onnx", b"anything", "x.onnx")  # nothing recorded: nothing to check
