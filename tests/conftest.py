"""Shared test fixtures. Keep fixtures that only one test module uses inside that module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("VISION_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return ROOT / "models"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return ROOT / "samples"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The offline IDX datasets; CI always has them beside the checkout, so absence is a failure."""
    if not (SHARED_DATASETS / "mnist").is_dir():
        pytest.fail(f"datasets not found at {SHARED_DATASETS}; set VISION_SHARED_DATASETS")
    return SHARED_DATASETS
