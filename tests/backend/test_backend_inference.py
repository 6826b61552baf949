"""backend.model.inference: model cards, the ORT registry and the dynamic batcher, on the real models."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from backend.model.inference import Batcher, ModelLoadError, Registry, load_model
from devkit.backend_server import test_model_dir


@pytest.fixture(scope="module")
def model():
    return load_model(test_model_dir(), "mnist")


def test_registry_loads_warms_and_reports_ready():
    registry = Registry(test_model_dir(), ("mnist", "fashion-mnist"))
    assert not registry.ready.is_set()
    registry.load()
    assert registry.ready.is_set() and set(registry.models) == {"mnist", "fashion-mnist"}
    assert registry.get("fashion-mnist").card.preprocessing == "frame"
    assert registry.get("nope") is None


def test_probabilities_are_a_distribution(model):
    images = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    probs = model.predict(images).probs
    assert probs.shape == (5, 10) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (probs >= 0).all()


def test_concurrent_callers_get_their_own_results(model):
    """Many threads submitting at once are batched together, yet each gets exactly its own rows."""
    rng = np.random.default_rng(1)
    inputs = [rng.random((1 + i % 3, 28, 28), dtype=np.float32) for i in range(64)]
    expected = [model.run(x) for x in inputs]
    results: list = [None] * len(inputs)
    start = threading.Barrier(32)

    def worker(indices):
        start.wait()
        for i in indices:
            results[i] = model.predict(inputs[i])

    threads = [threading.Thread(target=worker, args=(range(k, 64, 32),)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got.probs, want.probs, atol=1e-6)
        np.testing.assert_allclose(got.ood_score, want.ood_score, atol=1e-5)
        np.testing.assert_array_equal(got.in_distribution, want.in_distribution)


def test_every_prediction_carries_the_ood_verdict_of_the_card(model, shared_datasets):
    """The graph's second output is the OOD score; the verdict is score <= the card's threshold,
    and it separates MNIST digits from uniform noise for the model as shipped."""
    from visionctl.ml.data import load_split

    digits = load_split("mnist", "test", shared_datasets / "mnist").images[:200].astype(np.float32) / 255
    noise = np.random.default_rng(2).random((200, 28, 28), dtype=np.float32)
    both = model.predict(np.concatenate([digits, noise]))
    assert both.ood_score.shape == (400,) and both.ood_score.dtype == np.float32
    assert both.in_distribution.dtype == np.bool_
    np.testing.assert_array_equal(both.in_distribution, both.ood_score <= np.float32(model.card.ood_threshold))
    assert model.card.ood_output == "ood_score" and model.card.ood_method
    assert both[:200].in_distribution.mean() >= 0.9  # the threshold keeps 97.5 % of held-out digits
    assert both.ood_score[:200].mean() < both.ood_score[200:].mean()


def test_a_graph_without_the_card_ood_output_is_refused(tmp_path):
    card = json.loads((test_model_dir() / "mnist.json").read_text())
    card["ood"]["output"] = "missing_output"
    (tmp_path / "mnist.json").write_text(json.dumps(card))
    shutil.copy(test_model_dir() / "mnist.onnx", tmp_path / "mnist.onnx")
    with pytest.raises(ModelLoadError, match="missing_output"):
        load_model(tmp_path, "mnist")


def test_a_failing_input_does_not_fail_its_batch_neighbours():
    calls = []
    gate = threading.Event()

    def run(batch):
        calls.append(len(batch))
        gate.wait(5)
        if np.isnan(batch).any():
            raise ValueError("bad input")
        return batch.sum(axis=(1, 2))

    batcher = Batcher(run, "test")
    good, bad = np.ones((2, 28, 28), np.float32), np.full((1, 28, 28), np.nan, np.float32)
    out: dict = {}

    def call(key, x):
        try:
            out[key] = batcher.submit(x)
        except ValueError as exc:
            out[key] = exc

    first = threading.Thread(target=call, args=("first", good))
    first.start()
    while not calls:  # the batcher is now busy with "first" ...
        threading.Event().wait(0.001)
    others = [threading.Thread(target=call, args=(k, x)) for k, x in (("good", good), ("bad", bad))]
    for t in others:
        t.start()
    threading.Event().wait(0.1)  # ... so these two queue up and run as one group
    gate.set()
    for t in [first, *others]:
        t.join(5)
    batcher.close()
    assert isinstance(out["bad"], ValueError)
    np.testing.assert_array_equal(out["good"], [784.0, 784.0])
    np.testing.assert_array_equal(out["first"], [784.0, 784.0])
    assert 3 in calls  # good + bad were really batched together before the fallback


@pytest.mark.parametrize("mutate, message", [
    (lambda card: card.update(labels=card["labels"][:9]), "expected 10 labels"),
    (lambda card: card["input"].update(preprocessing="zoom"), "input.preprocessing"),
    (lambda card: card["normalization"].update(std=0), "std must be > 0"),
    (lambda card: card.pop("normalization"), "malformed model card"),
    (lambda card: card.update(name="other"), "expected 'mnist'"),
    (lambda card: card["input"].update(name="pixels"), "card says 'pixels'"),
])
def test_inconsistent_cards_are_refused(tmp_path, mutate, message):
    shutil.copy(test_model_dir() / "mnist.onnx", tmp_path / "mnist.onnx")
    card = json.loads((test_model_dir() / "mnist.json").read_text())
    mutate(card)
    (tmp_path / "mnist.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=message):
        load_model(tmp_path, "mnist")


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="model file not found"):
        load_model(tmp_path, "mnist")
    (tmp_path / "mnist.json").write_text("{not json")
    (tmp_path / "mnist.onnx").write_bytes(b"onnx?")
    with pytest.raises(ModelLoadError, match="unreadable model card"):
        load_model(tmp_path, "mnist")
    card = json.loads((test_model_dir() / "mnist.json").read_text())
    card["artifacts"]["onnx"]["sha256"] = ""  # no checksum: ORT itself must reject the bytes
    (tmp_path / "mnist.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load it"):
        load_model(tmp_path, "mnist")
