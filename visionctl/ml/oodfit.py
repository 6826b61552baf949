"""Fit what is baked into the exported graph after training: temperature, OOD scores, and the choice
between them — all on data the network never trained on and that no evaluation uses.

* Held-out in-distribution mix: the train files' held-out tail (clean) plus the same images rendered
  as other writers/devices send them, plus printed digits from the train fonts (new renderings).
  Temperature and the OOD threshold are fitted on it.
* Validation outliers: synthetic families, mash-ups of held-out digits and the other dataset's
  held-out train tail, with validation seeds (the evaluation sets use other seeds and MNIST/Fashion
  *test* images).

Candidates are energy, max-softmax, Mahalanobis on the penultimate features, and the combinations
with Mahalanobis; the one with
the best *worst* family catch rate at the held-out threshold wins (the families users will send are
unknown, so the weakest one matters most), ties broken by the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backend.model.inference import in_distribution
from visionctl.ml import ood, synth
from visionctl.ml.data import Split, get_spec, split_holdout
from visionctl.ml.model import Net
from visionctl.ml.training import load_other, to_tensor, unit_to_tensor

HOLDOUT_SEED, FONT_SEED, VALID_SEED, FEATURE_SEED = 101, 102, 103, 104


@dataclass
class Fitted:
    score: torch.nn.Module
    temperature: float
    holdout: np.ndarray      # float32 (N, 28, 28): the threshold's in-distribution images
    holdout_labels: np.ndarray
    fitted_on: str
    comparison: dict         # method → validation catch rates at its threshold


@torch.no_grad()
def _run(net: Net, x: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    net.eval()
    feats, logits = [], []
    for i in range(0, len(x), batch):
        f = net.features(x[i:i + batch])
        feats.append(f)
        logits.append(net.head(f))
    return torch.cat(feats), torch.cat(logits)


def holdout_mix(dataset: str, holdout: Split) -> tuple[np.ndarray, np.ndarray, str]:
    mode = get_spec(dataset).preprocessing
    renderers = synth.TRAIN_RENDERERS if dataset == "mnist" else synth.FASHION_RENDERERS
    clean = holdout.images.astype(np.float32) / 255
    rendered = synth.render_digits(holdout.images, holdout.labels, HOLDOUT_SEED, mode, renderers)
    parts, labels = [clean, rendered], [holdout.labels, holdout.labels]
    desc = f"{dataset} train files' last {len(clean)} images (not trained on): as is and re-rendered"
    if dataset == "mnist":
        fonts, fl = synth.render_fonts(len(clean) // 5, "train", FONT_SEED, mode)
        parts.append(fonts)
        labels.append(fl)
        desc += f", plus {len(fonts)} printed digits (train fonts, new renderings)"
    return np.concatenate(parts), np.concatenate(labels), desc


def validation_outliers(dataset: str, holdout: Split, data_dir, n: int) -> dict[str, np.ndarray]:
    mode = get_spec(dataset).preprocessing
    out = {name: synth.render_family(name, n, VALID_SEED, mode) for name in synth.NOISE_FAMILIES}
    _, other_tail = split_holdout(load_other(dataset, data_dir))
    from PIL import Image

    from backend.model.preprocessing import preprocess
    out["other-dataset"] = np.stack([preprocess(Image.fromarray(x), mode) for x in other_tail.images[:n]])
    if dataset == "mnist":
        out["digit-mashup"] = np.stack([preprocess(synth.digit_mashup(holdout.images, holdout.labels,
                                                                        synth.rng_for(VALID_SEED, "mashup", i)), mode)
                                        for i in range(n)])
    return out


def fit(net: Net, dataset: str, fit_split: Split, holdout: Split, data_dir, n_valid: int = 400,
        n_features: int = 20000) -> Fitted:
    mode = get_spec(dataset).preprocessing
    net = net.eval()
    # Mahalanobis statistics from training images (clean and rendered): the features the net knows.
    rng = np.random.default_rng(FEATURE_SEED)
    pick = rng.choice(len(fit_split.labels), min(n_features, len(fit_split.labels)), replace=False)
    renderers = synth.TRAIN_RENDERERS if dataset == "mnist" else synth.FASHION_RENDERERS
    half = pick[: len(pick) // 4]
    rendered = synth.render_digits(fit_split.images[half], fit_split.labels[half], FEATURE_SEED, mode, renderers)
    x_feat = torch.cat([to_tensor(fit_split.images[pick]), unit_to_tensor(rendered)])
    y_feat = torch.from_numpy(np.concatenate([fit_split.labels[pick], fit_split.labels[half]]))
    feats, _ = _run(net, x_feat)
    maha = ood.MahalanobisScore.fit(feats, y_feat)

    h_images, h_labels, desc = holdout_mix(dataset, holdout)
    h_feats, h_logits = _run(net, unit_to_tensor(h_images))
    temperature = ood.fit_temperature(F.log_softmax(h_logits, 1).numpy(), h_labels)
    energy, msp = ood.EnergyScore(), ood.MaxSoftmaxScore()

    def combine(a, b):
        with torch.no_grad():
            (ca, sa), (cb, sb) = (ood.robust_standardiser(x(h_feats, h_logits).numpy()) for x in (a, b))
        return ood.CombinedScore(a, b, (ca, cb), (sa, sb))
    candidates = {"energy": energy, "max-softmax": msp, "mahalanobis": maha,
                  "energy+mahalanobis": combine(energy, maha), "max-softmax+mahalanobis": combine(msp, maha)}

    valid = validation_outliers(dataset, holdout, data_dir, n_valid)
    v_out = {fam: _run(net, unit_to_tensor(x)) for fam, x in valid.items()}
    comparison, best, best_key = {}, None, None
    for name, score in candidates.items():
        with torch.no_grad():
            s_h = score(h_feats, h_logits).numpy()
            threshold = ood.fit_threshold(s_h)
            caught = {fam: round(float((~in_distribution(score(f, lg).numpy(), threshold)).mean()), 4)
                      for fam, (f, lg) in v_out.items()}
            auroc = {fam: round(ood.auroc(s_h, score(f, lg).numpy()), 4) for fam, (f, lg) in v_out.items()}
        key = (min(caught.values()), float(np.mean(list(caught.values()))))
        comparison[name] = {"worst_caught": key[0], "mean_caught": round(key[1], 4), "caught": caught, "auroc": auroc}
        if best_key is None or key > best_key:
            best, best_key = name, key
    comparison["chosen"] = best
    return Fitted(candidates[best], temperature, h_images, h_labels, desc, comparison)
