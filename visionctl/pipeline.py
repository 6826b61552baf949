"""Train → export, with progress bars: the library behind ``visionctl train`` and ``export``."""

from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from visionctl.data import DatasetError


class PipelineError(RuntimeError):
    pass


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn())


def train_and_export(dataset: str, *, models_dir: Path, data_dir=None, augment: bool = True,
                     **overrides) -> dict:
    from visionctl import export as ex
    from visionctl import training

    if dataset != "mnist" and overrides.get("init_weights") is None:
        overrides["init_weights"] = str(Path(models_dir) / "mnist.pt")
    if not augment:
        overrides.update(max_rotation=0.0, max_shift=0.0, scale_range=0.0, stroke_prob=0.0, hflip=False)
    init = overrides.get("init_weights")
    if init and not Path(init).is_file():
        raise PipelineError(f"initial weights {init} not found; run `visionctl train mnist` first")
    try:
        cfg = training.make_config(dataset, data_dir=str(data_dir) if data_dir else None, **overrides)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None

    tasks: dict[str, int] = {}
    with _progress() as bar:
        def progress(phase: str, done: int, total: int, stats: dict) -> None:
            if not bar.console.is_terminal and done == total and "test_acc" in stats:
                # Logs (CI, nohup) get one line per epoch instead of nothing until the end.
                bar.console.print(f"{phase}: " + "  ".join(f"{k} {v:.4f}" for k, v in stats.items()))
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, stats="")
            text = "  ".join(f"{k} {v:.4f}" for k, v in stats.items())
            bar.update(tasks[phase], completed=done, stats=text)

        try:
            model, metrics, checksums = training.train(cfg, progress)
        except DatasetError as exc:
            raise PipelineError(str(exc)) from None
    from visionctl.data import load_split

    parity = training.to_tensor(load_split(dataset, "test", cfg.data_dir).images[:256])
    try:
        return ex.export_model(model, dataset, models_dir, metrics=metrics, data_sha256=checksums,
                               training=cfg.to_dict(), parity_batch=parity)
    except ex.ExportError as exc:
        raise PipelineError(str(exc)) from None


def export(dataset: str, *, weights: Path | None, models_dir: Path, data_dir=None) -> dict:
    from visionctl import export as ex

    weights = Path(weights or Path(models_dir) / f"{dataset}.pt")
    if not weights.is_file():
        raise PipelineError(f"weights {weights} not found; train first or pass --weights")
    try:
        return ex.export_weights(weights, dataset, models_dir, data_dir=str(data_dir) if data_dir else None)
    except (ex.ExportError, DatasetError) as exc:
        raise PipelineError(str(exc)) from None
