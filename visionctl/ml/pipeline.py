"""Train → export: the library behind ``visionctl train`` and ``export``. Progress goes to a
callback (the CLI draws it), so the library never touches the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from visionctl.ml.data import DatasetError

if TYPE_CHECKING:  # training imports torch; the annotation alone must not
    from visionctl.ml.training import ProgressFn


class PipelineError(RuntimeError):
    pass


def weights_provenance(weights: Path, models_dir: Path) -> dict:
    """What a fine-tuned model's card records of the weights it started from: their SHA-256, which ties
    it to one parent model whatever folder training read them from, and their file name relative to
    the models dir (the path as given when they were elsewhere)."""
    from backend.model.card import sha256_file
    try:
        file = str(weights.resolve().relative_to(models_dir.resolve()))
    except ValueError:
        file = str(weights)
    return {"file": file, "sha256": sha256_file(weights)}


def train_and_export(dataset: str, *, models_dir: Path, data_dir=None, augment: bool = True,
                     progress: ProgressFn | None = None, **overrides) -> dict:
    """Train ``dataset``'s model, export it and return its model card; ``progress(phase, done,
    total, stats)`` is called after every batch."""
    from visionctl.ml import export as ex
    from visionctl.ml import train_config, training
    if dataset != "mnist" and overrides.get("init_weights") is None:
        overrides["init_weights"] = str(Path(models_dir) / "mnist.pt")
    if not augment:
        overrides.update(max_rotation=0.0, max_shift=0.0, scale_range=0.0, stroke_prob=0.0, hflip=False,
                         lowres_prob=0.0, max_shear=0.0, max_stretch=0.0, fresh_small=0.0,
                         fresh_small_outliers=0.0)
    init = overrides.get("init_weights")
    if init and not Path(init).is_file():
        raise PipelineError(f"initial weights {init} not found; run `visionctl train mnist` first")
    try:
        cfg = train_config.make_config(dataset, data_dir=str(data_dir) if data_dir else None, **overrides)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None

    try:
        model, metrics, checksums = training.train(cfg, progress)
    except (DatasetError, training.InitWeightsError) as exc:
        raise PipelineError(str(exc)) from None
    from visionctl.ml.data import load_split

    parity = training.to_tensor(load_split(dataset, "test", cfg.data_dir).images[:256])
    if progress:
        progress("fitting OOD score and temperature", 0, 1, {})
    recipe = cfg.to_dict()
    if cfg.init_weights:
        recipe["init_weights"] = weights_provenance(Path(cfg.init_weights), Path(models_dir))
    try:
        return ex.export_fitted(model, dataset, models_dir, cfg.data_dir, metrics=metrics, data_sha256=checksums,
                                training=recipe, parity_batch=parity, quick=bool(cfg.limit))
    except ex.ExportError as exc:
        raise PipelineError(str(exc)) from None


def export(dataset: str, *, weights: Path | None, models_dir: Path, data_dir=None) -> dict:
    from visionctl.ml import export as ex
    weights = Path(weights or Path(models_dir) / f"{dataset}.pt")
    if not weights.is_file():
        raise PipelineError(f"weights {weights} not found; train first or pass --weights")
    try:
        return ex.export_weights(weights, dataset, models_dir, data_dir=str(data_dir) if data_dir else None)
    except (ex.ExportError, DatasetError) as exc:
        raise PipelineError(str(exc)) from None
