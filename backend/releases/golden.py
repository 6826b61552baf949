"""The golden set of a served name: ``<golden dir>/<name>.npz`` (images uint8 N×28×28, labels).

It belongs to the name, not to a version: every candidate of ``mnist`` is measured on the same
held-out images, whatever its own card claims. ``scripts/build-golden-sets.py`` makes them from
the official test split; the image copies them beside the base models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import ModelLoadError


@dataclass(frozen=True)
class GoldenSet:
    name: str
    images: np.ndarray  # float32 (N, 28, 28) in [0, 1]: what Model.run takes
    labels: np.ndarray  # int64 (N,)
    source: str


def load(path: Path, name: str) -> GoldenSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
            source = str(data["source"]) if "source" in data else str(path)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{path}: no usable golden set for {name!r} ({exc}); "
                             "build it with scripts/build-golden-sets.py") from None
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels) or not len(images):
        raise ModelLoadError(f"{path}: golden set images {images.shape} / labels {labels.shape} do not match")
    return GoldenSet(name, (images.astype(np.float32) / 255.0), labels.astype(np.int64), source)
