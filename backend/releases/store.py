"""Model versions on disk: ``<versions dir>/<name>/<version>/<name>.onnx + <name>.json``.

A version is what ``visionctl train``/``export`` writes (ONNX + card), copied in whole and
addressed by the card's name and version. The base model of the models folder
(``<models dir>/<name>.onnx``, the one an image carries) is a version too: the one that is stable
until a release says otherwise.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from backend.errors import ModelLoadError
from backend.model import card as modelcard
from backend.model.card import ModelCard
from backend.releases.record import Layout


class ArtifactError(ModelLoadError):
    """An artifact folder does not hold a usable model of the expected name."""


def read_artifact(directory: Path, name: str) -> ModelCard:
    """The card of ``directory/<name>.json`` after checking the ONNX file is the one it records."""
    card_path, onnx_path = directory / f"{name}.json", directory / f"{name}.onnx"
    for path in (card_path, onnx_path):
        if not path.is_file():
            raise ArtifactError(f"{path} not found: an artifact folder is what "
                                f"`visionctl export {name} --models-dir DIR` writes ({name}.onnx + {name}.json)")
    card = modelcard.read(card_path)
    modelcard.check_artifact(card, "onnx", onnx_path.read_bytes(), onnx_path)
    return card


def add(layout: Layout, name: str, artifact_dir: Path) -> ModelCard:
    """Copy an exported artifact into the versions store (idempotent); returns its card."""
    card = read_artifact(Path(artifact_dir), name)
    target = layout.version_dir(name, card.version)
    if (target / f"{name}.json").is_file():
        stored = read_artifact(target, name)
        if stored.artifact_sha256("onnx") != card.artifact_sha256("onnx"):
            raise ArtifactError(f"{target} already holds a different model under version {card.version}")
        return stored
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{card.version}."))
    try:
        for suffix in (".onnx", ".json"):
            shutil.copyfile(Path(artifact_dir) / f"{name}{suffix}", tmp / f"{name}{suffix}")
        tmp.chmod(0o755)
        tmp.rename(target)  # a reader sees a complete version folder or none
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def base_version(layout: Layout, name: str) -> str | None:
    path = layout.models_dir / f"{name}.json"
    try:
        return modelcard.read(path).version if path.is_file() else None
    except modelcard.CardError:
        return None


def model_dir(layout: Layout, name: str, version: str | None) -> Path:
    """The folder holding ``version`` of ``name`` (``None``: the base model)."""
    if version is None:
        return layout.models_dir
    stored = layout.version_dir(name, version)
    if (stored / f"{name}.json").is_file():
        return stored
    if base_version(layout, name) == version:
        return layout.models_dir
    raise ArtifactError(f"version {version} of {name} is neither in {layout.versions_dir / name} nor the base "
                        f"model in {layout.models_dir}")


def versions(layout: Layout, name: str) -> list[str]:
    root = layout.versions_dir / name
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
