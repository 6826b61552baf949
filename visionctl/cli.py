"""visionctl — the one command-line tool for the Vision AI service.

Each command is a thin wrapper: it parses flags, calls a library function in ``visionctl.*`` and
renders the result. Heavy imports (torch, onnxruntime) happen inside commands so ``--help`` is fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(help="Train, serve, package and deploy the Vision AI image classifier.",
                  no_args_is_help=True, rich_markup_mode="rich")
console = Console()
err = Console(stderr=True)


class Dataset(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"


class Strategy(str, Enum):
    fc2 = "fc2"
    fc1_fc2 = "fc1+fc2"
    all = "all"


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


DataDirOpt = typer.Option(None, "--data-dir", envvar="VISION_DATA_DIR",
                          help="Folder with the IDX files (offline); default: download with torchvision.")
ModelsDirOpt = typer.Option(Path("models"), "--models-dir", envvar="VISION_MODEL_DIR", help="Where models live.")


@app.command()
def train(
    dataset: Dataset = typer.Argument(..., help="mnist (from scratch) or fashion-mnist (fine-tuned from mnist)."),
    data_dir: Optional[Path] = DataDirOpt,
    models_dir: Path = ModelsDirOpt,
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs [default: 8 mnist, 5 fashion-mnist]."),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(1.0, min=0.0, help="Adadelta learning rate."),
    gamma: float = typer.Option(0.7, min=0.0, max=1.0, help="StepLR decay per epoch."),
    seed: int = typer.Option(1),
    threads: int = typer.Option(2, min=1, help="torch intra-op threads."),
    strategy: Optional[Strategy] = typer.Option(None, help="Fine-tuning: which layers learn [default: all]."),
    init_weights: Optional[Path] = typer.Option(None, help="Start from these weights [fashion-mnist default: <models-dir>/mnist.pt]."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random shift/rotate/scale/stroke augmentation."),
    limit: int = typer.Option(0, min=0, help="Use only the first N samples (smoke runs)."),
) -> None:
    """Train a model, then export it (ONNX + state dict + model card) into --models-dir."""
    from visionctl import pipeline

    try:
        card = pipeline.train_and_export(
            dataset.value, models_dir=models_dir, data_dir=data_dir, augment=augment,
            epochs=epochs, batch_size=batch_size, lr=lr, gamma=gamma, seed=seed, threads=threads,
            strategy=strategy.value if strategy else None,
            init_weights=str(init_weights) if init_weights else None, limit=limit)
    except pipeline.PipelineError as exc:
        fail(str(exc))
    console.print(f"[green]✓[/] {card['name']} {card['version']}: test accuracy "
                  f"{card['metrics']['test_accuracy']:.2%} → {models_dir}/{card['name']}.onnx")


@app.command("export")
def export_cmd(
    dataset: Dataset = typer.Argument(Dataset.mnist, help="Which model (sets labels and test set)."),
    weights: Optional[Path] = typer.Option(None, help="State dict to convert [default: <models-dir>/<name>.pt]."),
    models_dir: Path = ModelsDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Export a state dict (yours or the assignment's mnist_cnn.pt) to ONNX with a parity check."""
    from visionctl import pipeline

    try:
        card = pipeline.export(dataset.value, weights=weights, models_dir=models_dir, data_dir=data_dir)
    except pipeline.PipelineError as exc:
        fail(str(exc))
    console.print(f"[green]✓[/] exported {card['name']} {card['version']} "
                  f"(accuracy {card['metrics']['test_accuracy']:.2%}, parity {card['export']['parity_max_abs_diff']:.1e})")


@app.command()
def evaluate(
    dataset: Dataset = typer.Argument(..., help="Which shipped model to evaluate."),
    models_dir: Path = ModelsDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    out_dir: Path = typer.Option(Path("docs/evaluation"), help="Where the PNGs go."),
) -> None:
    """Accuracy of the ONNX artifact on the test set, plus confusion-matrix and mistakes PNGs."""
    from visionctl import evaluation
    from visionctl.data import DatasetError

    try:
        report = evaluation.evaluate_model(dataset.value, models_dir=models_dir, data_dir=data_dir, out_dir=out_dir)
    except (DatasetError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(f"{dataset.value}: accuracy {report['accuracy']:.2%} on {report['samples']} test images")
    for path in report["files"]:
        console.print(f"  wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    app()
