"""Where things are in the checkout, for tests: one definition instead of one per test module."""

import importlib.util

from devkit.paths import DATASETS, ROOT

SAMPLES = ROOT / "samples"
MODELS = ROOT / "models"


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (its tables and bars, without running it)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


__all__ = ["DATASETS", "MODELS", "ROOT", "SAMPLES", "load_benchmark"]
