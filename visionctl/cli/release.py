"""``visionctl release``: hand a new model version over to serving, safely (library:
:mod:`visionctl.ops.releases` locally, :mod:`visionctl.ops.cluster_releases` on a cluster)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from visionctl.cli import render
from visionctl.cli.options import DEFAULT_MODELS_DIR, Dataset

app = typer.Typer(name="release", no_args_is_help=True,
                  help="Ship a model version: gate, canary or shadow, automatic promotion or rollback.")


class Mode(StrEnum):
    canary = "canary"
    shadow = "shadow"


ModelsDirOpt = Annotated[Path | None, typer.Option(
    "--models-dir", help="The models folder of a local `visionctl serve --models-dir DIR` [default: models].")]
ContextOpt = Annotated[str | None, typer.Option(
    "--context", help="kubectl context of the cluster running the chart (instead of --models-dir).")]
Namespace = Annotated[str | None, typer.Option(help="Namespace of the chart release [default: vision-ai].")]
Reason = Annotated[str, typer.Option(help="Why (goes to the audit history).")]


def _target(models_dir: Path | None, context: str | None, namespace: str | None):
    """A local layout or a cluster target; exactly one of --models-dir / --context."""
    if models_dir is not None and context is not None:
        render.fail("use either --models-dir (local serve) or --context (cluster), not both", 2)
    if context is not None:
        from visionctl.ops import cluster_releases

        # This checkout's versions store (gate baseline, model image contents): ./models by default.
        return cluster_releases.ClusterReleases(context, namespace, render.console, models_dir=DEFAULT_MODELS_DIR)
    from backend.releases.record import Layout

    directory = models_dir or DEFAULT_MODELS_DIR
    if not directory.is_dir():
        render.fail(f"{directory} is not a folder (the one `visionctl serve --models-dir` serves)", 2)
    return _Local(Layout.for_models_dir(directory))


class _Local:
    def __init__(self, layout):
        self.layout = layout

    def start(self, name, artifact_dir, mode, weight, policy):
        from visionctl.ops import releases

        return releases.start(self.layout, name, artifact_dir, mode, weight, policy)

    def promote(self, name, reason):
        from visionctl.ops import releases

        return releases.promote(self.layout, name, reason)

    def rollback(self, name, reason):
        from visionctl.ops import releases

        return releases.rollback(self.layout, name, reason)

    def status(self, name):
        from visionctl.ops import releases

        return releases.status(self.layout, name)


def _run(fn):
    from backend.releases.policy import PolicyError
    from visionctl.ops.releases import ReleaseError
    from visionctl.ops.runner import StepFailed

    try:
        return fn()
    except (ReleaseError, PolicyError) as exc:
        render.fail(str(exc))
    except StepFailed as exc:
        render.failure(exc)
        raise typer.Exit(1) from None


@app.command()
def start(
    name: Annotated[Dataset, typer.Argument(help="The served model name.")],
    artifact_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help=(
        "Folder written by `visionctl export NAME --models-dir DIR` (NAME.onnx + NAME.json)."))],
    mode: Annotated[Mode, typer.Option(help=(
        "canary: the candidate answers --weight % of requests; "
        "shadow: it sees a copy of live traffic, users get stable."))] = Mode.canary,
    weight: Annotated[int, typer.Option(min=0, max=100, help="Canary share in percent.")] = 10,
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", help="Override a policy value, key=value (repeatable), e.g. min_requests=500 auto=false.")] = None,
    models_dir: ModelsDirOpt = None,
    context: ContextOpt = None,
    namespace: Namespace = None,
) -> None:
    """Gate a version against stable on NAME's golden set and start a canary or shadow release.

    Exit 1 when the gate refuses it (the reason and the figures are printed); stable keeps serving."""
    from backend.releases.policy import parse_assignments

    target = _target(models_dir, context, namespace)
    values = _run(lambda: parse_assignments(policy or []))
    started = _run(lambda: target.start(name.value, artifact_dir, mode.value, weight, values))
    figures = started.gate.figures
    if not started.gate.passed:
        render.fail(f"gate refused {name.value} {started.version}: {started.gate.reason}\n"
                    f"  golden-set accuracy {figures.get('accuracy', 'n/a')}, floor {figures.get('floor', 'n/a')} "
                    f"(stable {started.stable}: {figures.get('stable_accuracy', 'n/a')}); stable keeps serving")
    share = f"{weight}% of requests" if mode is Mode.canary else "a shadow copy of live traffic"
    render.console.print(f"[green]✓[/] {name.value} {started.version} gets {share} (stable {started.stable})")
    render.console.print(f"  gate: {started.gate.reason}")
    render.console.print("  the server applies it within seconds; `visionctl release status "
                         f"{name.value}` shows the judge's verdict")


@app.command()
def promote(name: Annotated[Dataset, typer.Argument()], reason: Reason = "promoted by hand",
            models_dir: ModelsDirOpt = None, context: ContextOpt = None, namespace: Namespace = None) -> None:
    """Make the candidate stable now."""
    target = _target(models_dir, context, namespace)
    entry = _run(lambda: target.promote(name.value, reason))
    render.console.print(f"[green]✓[/] {name.value} {entry['version']} is stable (was {entry.get('replaced')})")


@app.command()
def rollback(name: Annotated[Dataset, typer.Argument()], reason: Reason = "rolled back by hand",
             models_dir: ModelsDirOpt = None, context: ContextOpt = None, namespace: Namespace = None) -> None:
    """Stop the running release (stable keeps serving) or, with none, go back to the previous stable."""
    target = _target(models_dir, context, namespace)
    entry = _run(lambda: target.rollback(name.value, reason))
    render.console.print(f"[green]✓[/] {name.value}: {entry['version']} rolled back; stable is {entry.get('stable')}")


@app.command()
def status(name: Annotated[Dataset, typer.Argument()],
           as_json: Annotated[bool, typer.Option("--json", help="The whole state and history as JSON.")] = False,
           models_dir: ModelsDirOpt = None, context: ContextOpt = None, namespace: Namespace = None) -> None:
    """Stable, candidate, policy and the audit history of NAME's releases."""
    target = _target(models_dir, context, namespace)
    state = _run(lambda: target.status(name.value))
    if as_json:
        render.console.print_json(json.dumps(state))
        return
    render.release_status(state)


@app.command()
def judge(name: Annotated[Dataset, typer.Argument()], context: Annotated[str, typer.Option(
              "--context", help="kubectl context of the cluster (locally the server judges by itself).")],
          namespace: Namespace = None,
          watch: Annotated[bool, typer.Option(
              "--watch", help="Repeat every 5 s until a verdict (at most 1 h).")] = False,
          ) -> None:
    """Cluster: add up every backend pod's live figures, decide with the release's policy, and apply
    the verdict (pods cannot write the state ConfigMap themselves)."""
    from visionctl.ops import cluster_releases

    target = cluster_releases.ClusterReleases(context, namespace, render.console, models_dir=DEFAULT_MODELS_DIR)
    if watch:
        _run(lambda: target.watch(name.value))
    action, reason, figures = _run(lambda: target.judge(name.value))
    render.console.print(f"{name.value}: {action or 'no verdict yet'} — {reason}")
    if figures:
        render.console.print_json(json.dumps(figures))
