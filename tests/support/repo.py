"""Where things are in the checkout, for tests: one definition instead of one per test module."""

from devkit.paths import DATASETS, ROOT

SAMPLES = ROOT / "samples"
MODELS = ROOT / "models"

__all__ = ["DATASETS", "MODELS", "ROOT", "SAMPLES"]
