"""Where things are in the checkout, for tests: one definition instead of one per test module."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
MODELS = ROOT / "models"
