"""Shared test fixtures. Keep fixtures that only one test module uses inside that module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from repo import DATASETS, MODELS, ROOT, SAMPLES

from devkit.backend_server import BackendServer, test_model_dir


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The offline IDX datasets; CI always has them beside the checkout, so absence is a failure."""
    if not (DATASETS / "mnist").is_dir():
        pytest.fail(f"datasets not found at {DATASETS}; set VISION_DATA_DIR")
    return DATASETS


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """``VISION_*`` settings of this module's real server; override the fixture to change them."""
    return {}


@pytest.fixture(scope="module")
def server(server_env) -> Iterator[BackendServer]:
    """A real ``python -m backend`` (one worker) on a free loopback port, for this module."""
    with BackendServer(model_dir=test_model_dir(), env=server_env) as s:
        yield s


@pytest.fixture(scope="session")
def candidates(tmp_path_factory, shared_datasets) -> dict[str, Path]:
    """Exported mnist candidates (``devkit.candidates``: good, worse, biased), one folder each."""
    from devkit import candidates as made

    root = tmp_path_factory.mktemp("candidates")
    return {kind: made.make(kind, root / kind, shared_datasets) for kind in made.KINDS}


@pytest.fixture
def release_models(tmp_path) -> Path:
    """A fresh models folder (the shipped base models) for a server that releases into it."""
    import shutil

    folder = tmp_path / "models"
    folder.mkdir()
    for f in [*MODELS.glob("*.onnx"), *MODELS.glob("*.json")]:
        shutil.copy(f, folder)
    return folder
