"""Out-of-distribution scores baked into the exported graph, and the threshold that turns one into a verdict.

The served graph has two outputs: the class log-probabilities and ``ood_score`` (higher = more
unusual). Every method lives here as a torch module over (features, logits), so export turns any of
them into plain ONNX operators and the backend stays method-agnostic: one ORT run gives both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from visionctl.ml.model import Net

OOD_OUTPUT = "ood_score"
# Share of held-out in-distribution images the threshold keeps in distribution.
TARGET_IN_DISTRIBUTION = 0.975


class EnergyScore(nn.Module):
    """Negative free energy, ``-T·logsumexp(logits / T)`` (Liu et al. 2020): low for inputs the
    classifier has a confident logit for, and unlike max-softmax it keeps the logits' scale."""

    method = "energy"

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        return -t * torch.logsumexp(logits / t, dim=1)


class Serving(nn.Module):
    """What is exported: ``input`` → (``log_probs`` with temperature scaling, ``ood_score``)."""

    def __init__(self, net: Net, score: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.net = net
        self.score = score
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net.features(x)
        logits = self.net.head(features)
        return F.log_softmax(logits / self.temperature, dim=1), self.score(features, logits)


def fit_threshold(scores: np.ndarray, target: float = TARGET_IN_DISTRIBUTION) -> float:
    """The score at or below which ``target`` of held-out in-distribution images fall."""
    return float(np.quantile(np.asarray(scores, np.float64), target, method="higher"))


def auroc(inliers: np.ndarray, outliers: np.ndarray) -> float:
    """Probability that a random outlier scores higher than a random inlier (ties count half)."""
    a, b = np.asarray(inliers, np.float64), np.asarray(outliers, np.float64)
    if not len(a) or not len(b):
        return float("nan")
    both = np.concatenate([a, b])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    # Average ranks over ties.
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, ranks)
    ranks = (sums / counts)[inverse]
    return float((ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))
