"""OOD scores, threshold, calibration helpers and the synthetic sets: exact on small known inputs,
and every score baked into ONNX answers like torch."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from backend.model import inference
from visionctl.ml import export as vexport
from visionctl.ml import ood, oodeval, oodfit, synth
from visionctl.ml.data import DatasetError
from visionctl.ml.model import Net


def test_auroc_known_values():
    assert ood.auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert ood.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert ood.auroc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5  # ties count half
    assert ood.auroc(np.array([0.0, 2.0]), np.array([1.0, 3.0])) == 0.75


def test_threshold_keeps_the_target_share():
    scores = np.random.default_rng(0).normal(size=10_000)
    t = ood.fit_threshold(scores, 0.975)
    assert (scores <= t).mean() == pytest.approx(0.975, abs=1e-3)


def test_ece_of_perfect_and_overconfident_predictions():
    labels = np.arange(10) % 3
    onehot = np.eye(3)[labels]
    assert ood.ece(onehot, labels) == 0.0
    assert ood.ece(np.eye(3)[(labels + 1) % 3], labels) == 1.0  # always sure, always wrong


def test_temperature_is_recovered():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (20_000, 10))
    p = np.exp(logits / 2.0)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in p])
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert ood.fit_temperature(log_probs, labels) == pytest.approx(2.0, rel=0.05)


def test_max_softmax_score_is_minus_log_top_probability():
    logits = torch.tensor([[0.0] * 10, [10.0] + [0.0] * 9])
    got = ood.MaxSoftmaxScore()(None, logits)
    torch.testing.assert_close(got, -torch.log_softmax(logits, 1).max(1).values)
    assert got[0] == pytest.approx(np.log(10), rel=1e-6)


def test_mahalanobis_matches_the_definition():
    torch.manual_seed(0)
    feats, labels = torch.randn(500, 6).abs(), torch.arange(500) % 3
    score = ood.MahalanobisScore.fit(feats, labels, shrinkage=0.0)
    x = torch.randn(7, 6)
    means = torch.stack([feats[labels == c].mean(0) for c in range(3)]).double()
    centred = feats.double() - means[labels]
    precision = torch.linalg.inv(centred.t() @ centred / len(feats))
    d = torch.stack([torch.einsum("ni,ij,nj->n", x.double() - m, precision, x.double() - m) for m in means], 1)
    torch.testing.assert_close(score(x, None).double(), d.min(1).values, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["energy", "max-softmax", "mahalanobis", "energy+mahalanobis"])
def test_every_score_exports_to_onnx_with_parity(kind):
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        feats = net.features(x)
    energy = ood.EnergyScore()
    maha = ood.MahalanobisScore.fit(feats, torch.arange(64) % 10)
    score = {"energy": energy, "mahalanobis": maha, "max-softmax": ood.MaxSoftmaxScore(),
             "energy+mahalanobis": ood.CombinedScore(energy, maha, (0.0, 10.0), (1.0, 5.0))}[kind]
    assert score.method == kind
    serving = vexport.serving_module(net, score, temperature=1.7)
    blob = vexport.onnx_bytes(serving)
    assert vexport.check_parity(serving, blob, x) <= vexport.PARITY_ATOL
    log_probs, scores = vexport.run_onnx(vexport.session(blob), np.zeros((3, 28, 28), np.float32))
    assert log_probs.shape == (3, 10) and scores.shape == (3,)


def test_fonts_are_split_by_family():
    train, held_out = synth.fonts("train"), synth.fonts("eval")
    if synth.missing_fonts("train") or synth.missing_fonts("eval"):
        pytest.fail(f"fonts missing: apt-get install {synth.FONT_PACKAGES}")
    assert not set(train) & set(held_out)
    names = [os.path.basename(f) for f in held_out]
    assert not any(n.replace("-", "").startswith(synth.TRAIN_FONTS) for n in names)


def test_a_missing_font_family_stops_rendering_and_names_the_packages(monkeypatch):
    """Without one family, training would learn another recipe and the eval-fonts set would change."""
    keep = tuple(f for f in synth.fonts("train") if not os.path.basename(f).startswith("Nimbus"))
    monkeypatch.setattr(synth, "fonts", lambda kind: keep)
    assert synth.missing_fonts("train") == ("NimbusSans", "NimbusRoman", "NimbusMonoPS")
    with pytest.raises(DatasetError, match="train fonts missing .*apt-get install fonts-dejavu"):
        synth.render_fonts(10, "train", 1)


def test_evaluation_seeds_are_not_training_seeds():
    assert oodeval.EVAL_SEED not in {1, oodfit.HOLDOUT_SEED, oodfit.FONT_SEED, oodfit.VALID_SEED, oodfit.FEATURE_SEED}


@pytest.mark.parametrize("family", sorted(synth.NOISE_FAMILIES))
def test_outlier_families_are_deterministic_preprocessed_images(family):
    a = synth.render_family(family, 6, seed=5, mode="digit")
    b = synth.render_family(family, 6, seed=5, mode="digit")
    assert a.shape == (6, 28, 28) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)


def test_digit_renderers_keep_the_label_readable_shape(shared_datasets):
    from visionctl.ml.data import load_split
    test = load_split("mnist", "test", shared_datasets / "mnist")
    out = synth.render_digits(test.images[:22], test.labels[:22], seed=3)
    assert out.shape == (22, 28, 28)
    assert (out.reshape(22, -1).max(1) > 0.5).all()  # every rendering still has ink after preprocessing


def test_optdigits_rendering_is_8x8_with_17_levels():
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    for i in range(20):
        img = synth.optdigits(digit, synth.rng_for(0, "t", i))
        assert img.size[0] % 8 == 0 and img.size[0] == img.size[1]
        if img.size == (8, 8):
            levels = np.unique(np.asarray(img))
            assert len(levels) <= 17


@pytest.mark.parametrize("render, cells", [(synth.optdigits, synth.optdigits_grid),
                                           (lambda d, rng: synth.lowres(d, rng, 8),
                                            lambda d, rng: synth.lowres_grid(d, rng, 8)),
                                           (synth.lowres, synth.lowres_grid)])
def test_the_cells_are_the_pictures_own(render, cells):
    """``*_grid`` with the same rng gives the pixels the picture was made of (a resolution ceiling reads
    them instead of the picture): equal when sent small, under an inversion or nearest-neighbour blocks."""
    digit = np.zeros((28, 28), np.uint8)
    digit[5:23, 10:17] = 255
    digit[5:9, 6:20] = 180
    seen = set()
    for i in range(60):
        grid = synth._u8(cells(digit, synth.rng_for(9, "cells", i)))  # as the picture rounds its cells
        a = np.asarray(render(digit, synth.rng_for(9, "cells", i)).convert("L"))
        k = a.shape[0] // grid.shape[0]
        blocks = np.kron(grid, np.ones((k, k), np.uint8))
        same = np.array_equal(a, blocks) or np.array_equal(255 - a, blocks)
        seen.add(("small" if k == 1 else "enlarged", same))
        assert same or k > 1, i  # sent small: always exactly the cells (perhaps inverted)
    assert ("small", True) in seen and ("enlarged", True) in seen  # nearest-neighbour blocks match too


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_shipped_threshold_is_the_held_out_quantile(name, models_dir, shared_datasets):
    """The card's threshold is what export says it is: the quantile of the served graph's scores on
    the held-out mix of train-file images (never the test set), re-rendered here from scratch."""
    from visionctl.ml import evaluation
    from visionctl.ml.data import load_split, split_holdout

    model = evaluation.load_model(name, models_dir)
    _, holdout = split_holdout(load_split(name, "train", shared_datasets / name))
    images, _, fitted_on = oodfit.holdout_mix(name, holdout)
    assert model.card.raw["ood"]["fitted_on"] == fitted_on
    scores = np.concatenate([model.predict(images[i:i + 512]).ood_score for i in range(0, len(images), 512)])
    threshold = ood.fit_threshold(scores, model.card.ood.target_in_distribution)
    assert threshold == pytest.approx(model.card.ood_threshold, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("t", [0.1, np.float64(0.1)])  # as the card gives it, and as NumPy may hand it on
def test_evaluations_flag_exactly_what_the_server_does(t):
    """Scores are float32, a threshold a double that is not exactly a float32 (float32(0.1) is
    slightly above 0.1). A score equal to the threshold's float32 is in distribution for the
    server, so it must be for every evaluation too, whatever type the threshold arrives as."""
    at = np.float32(t)
    scores = np.array([np.nextafter(at, np.float32(0)), at, np.nextafter(at, np.float32(1))], np.float32)
    assert inference.in_distribution(scores, t).tolist() == [True, True, False]
    assert oodeval.flagged(scores, t).tolist() == [False, False, True]
    assert oodeval.flagged_share(scores, t) == round(1 / 3, 6)
