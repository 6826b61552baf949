"""Model commands: train, export, evaluate (library: :mod:`visionctl.ml`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from visionctl.cli import render
from visionctl.cli.options import DEFAULT_MODELS_DIR, Arch, DataDir, Dataset, ModelsDir, Strategy
from visionctl.ml.train_config import TrainConfig, default_text

app = typer.Typer()
# Settings that are the same for every dataset show TrainConfig's default; per-dataset ones (epochs,
# gamma, seed, strategy) stay None here so the dataset's preset applies, and their help text is read from it.
TRAIN = TrainConfig()


@app.command()
def train(
    dataset: Annotated[Dataset, typer.Argument(help="mnist (from scratch) or fashion-mnist (fine-tuned from mnist).")],
    data_dir: DataDir = None,
    models_dir: ModelsDir = DEFAULT_MODELS_DIR,
    arch: Annotated[Arch | None, typer.Option(
        help="Network: vgg (4 convolutions), vgg-wide (the same, 1.5× the channels) or net (the assignment's 2).",
        show_default=default_text("arch"))] = None,
    epochs: Annotated[int | None, typer.Option(min=1, show_default=default_text("epochs"))] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = TRAIN.batch_size,
    lr: Annotated[float, typer.Option(min=0.0, help="Adadelta learning rate.")] = TRAIN.lr,
    gamma: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="StepLR decay per epoch.",
                                                show_default=default_text("gamma"))] = None,
    seed: Annotated[int | None, typer.Option(show_default=default_text("seed"))] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads.")] = TRAIN.threads,
    strategy: Annotated[Strategy | None, typer.Option(
        help="Fine-tuning: which layers learn.", show_default=default_text("strategy"))] = None,
    init_weights: Annotated[Path | None, typer.Option(
        help="Start from these weights.", show_default="fashion-mnist: <models-dir>/mnist.pt")] = None,
    augment: Annotated[bool, typer.Option("--augment/--no-augment",
                                          help="Random shift/rotate/scale/stroke augmentation.")] = True,
    limit: Annotated[int, typer.Option(min=0, help="Use only the first N samples (smoke runs).")] = 0,
) -> None:
    """Train a model, then export it (ONNX + state dict + model card) into --models-dir."""
    from visionctl.ml import pipeline

    try:
        with render.training_progress() as progress:
            card = pipeline.train_and_export(
                dataset.value, models_dir=models_dir, data_dir=data_dir, augment=augment, progress=progress,
                arch=arch.value if arch else None, epochs=epochs, batch_size=batch_size, lr=lr, gamma=gamma,
                seed=seed, threads=threads, strategy=strategy.value if strategy else None,
                init_weights=str(init_weights) if init_weights else None, limit=limit)
    except pipeline.PipelineError as exc:
        render.fail(str(exc))
    render.trained(card, models_dir)


@app.command("export")
def export_cmd(
    dataset: Annotated[Dataset, typer.Argument(help="Which model (sets labels and test set).")] = Dataset.mnist,
    weights: Annotated[Path | None, typer.Option(
        help="State dict to convert (else models/<name>.pt, so `export NAME --models-dir DIR` writes a "
             "release artifact of the current weights).", show_default="<models-dir>/<name>.pt")] = None,
    models_dir: ModelsDir = DEFAULT_MODELS_DIR,
    data_dir: DataDir = None,
) -> None:
    """Export a state dict (yours or the assignment's mnist_cnn.pt) to ONNX with a parity check.

    The folder it writes (ONNX + model card with its version) is what `visionctl release start` ships."""
    from visionctl.ml import pipeline

    shipped = DEFAULT_MODELS_DIR / f"{dataset.value}.pt"
    if weights is None and not (models_dir / f"{dataset.value}.pt").is_file() and shipped.is_file():
        weights = shipped

    try:
        card = pipeline.export(dataset.value, weights=weights, models_dir=models_dir, data_dir=data_dir)
    except pipeline.PipelineError as exc:
        render.fail(str(exc))
    render.exported(card)


@app.command()
def evaluate(
    dataset: Annotated[Dataset, typer.Argument(help="Which shipped model to evaluate.")],
    models_dir: ModelsDir = DEFAULT_MODELS_DIR,
    data_dir: DataDir = None,
    out_dir: Annotated[Path, typer.Option(help="Where the PNGs go.")] = Path("docs/evaluation"),
    limit: Annotated[int, typer.Option(min=0, help="Only the first N test images (quick checks; 0 = all).")] = 0,
) -> None:
    """Accuracy of the ONNX artifact on the test set, plus confusion-matrix and mistakes PNGs."""
    from backend.errors import ModelLoadError
    from visionctl.ml import evaluation
    from visionctl.ml.data import DatasetError

    try:
        report = evaluation.evaluate_model(dataset.value, models_dir=models_dir, data_dir=data_dir, out_dir=out_dir,
                                           limit=limit)
    except (DatasetError, FileNotFoundError, ModelLoadError) as exc:
        render.fail(str(exc))
    render.evaluated(dataset.value, report)
