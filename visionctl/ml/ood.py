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


class MaxSoftmaxScore(nn.Module):
    """``-log max_c softmax(logits)_c`` (Hendrycks & Gimpel 2017, in log form): 0 for a certain
    prediction, log 10 for a flat one. Outlier exposure trains outliers towards flat predictions,
    not towards small logits, so this — not energy — is the score that training optimises."""

    method = "max-softmax"

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(logits, dim=1) - logits.max(dim=1).values


class MahalanobisScore(nn.Module):
    """Distance of the penultimate features to the nearest class mean under one shared covariance
    (Lee et al. 2018): ``min_c (f - μ_c)ᵀ Σ⁻¹ (f - μ_c)``. Fitted on training features; in the graph
    it is one 128×128 matmul and a 10-way min of squared distances between ``z = f W`` and
    ``m_c = μ_c W``, where ``W Wᵀ = Σ⁻¹``."""

    method = "mahalanobis"

    def __init__(self, means: torch.Tensor, precision_factor: torch.Tensor):
        super().__init__()
        self.register_buffer("w", precision_factor.float())
        self.register_buffer("m", (means.double() @ precision_factor.double()).float())

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, shrinkage: float = 0.01) -> MahalanobisScore:
        f = features.double()
        means = torch.stack([f[labels == c].mean(0) for c in range(int(labels.max()) + 1)])
        centred = f - means[labels]
        cov = centred.t() @ centred / len(f)
        cov = (1 - shrinkage) * cov + shrinkage * torch.eye(len(cov), dtype=cov.dtype) * cov.diagonal().mean()
        factor = torch.linalg.cholesky(torch.linalg.inv(cov))
        return cls(means, factor)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        z = features @ self.w
        diff = z.unsqueeze(1) - self.m  # (N, classes, d): exact, unlike |z|² - 2z·m + |m|² in float32
        return (diff * diff).sum(2).min(1).values


class CombinedScore(nn.Module):
    """Two scores, each standardised on held-out in-distribution images (median, interquartile
    range), then the larger: an image is unusual if either view says so."""

    def __init__(self, first: nn.Module, second: nn.Module, centre: tuple[float, float],
                 scale: tuple[float, float]):
        super().__init__()
        self.first, self.second = first, second
        self.method = f"{first.method}+{second.method}"
        self.centre, self.scale = tuple(float(c) for c in centre), tuple(float(s) for s in scale)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        a = (self.first(features, logits) - self.centre[0]) / self.scale[0]
        b = (self.second(features, logits) - self.centre[1]) / self.scale[1]
        return torch.maximum(a, b)


def robust_standardiser(scores: np.ndarray) -> tuple[float, float]:
    q1, q2, q3 = np.quantile(np.asarray(scores, np.float64), [0.25, 0.5, 0.75])
    return float(q2), float(max(q3 - q1, 1e-6))


def fit_temperature(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising held-out NLL (grid, then a finer grid around the best)."""
    def nll(t: float) -> float:
        z = log_probs / t
        z = z - z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        return float((lse - z[np.arange(len(z)), labels]).mean())
    grid = np.exp(np.linspace(np.log(0.3), np.log(5), 60))
    best = min(grid, key=nll)
    fine = np.linspace(best * 0.93, best * 1.07, 29)
    return round(float(min(fine, key=nll)), 4)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error (equal-width confidence bins, weighted by bin size)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(total)


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
