"""Everything visionctl draws on the terminal: tables, panels, progress bars, failures.

Commands compute with library calls and hand results here; libraries never print (the Runner
draws only through the console the CLI gives it).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def failure(exc, *, verbose: bool = False) -> None:
    """A failed step (:class:`~visionctl.ops.runner.StepFailed`), the same way for every command:
    what failed, the command, the output tail, and what to do."""
    err.print(f"[bold red]✗ {escape(exc.step)} failed:[/] {escape(exc.reason)}")
    if exc.argv:
        err.print(f"  [dim]command:[/] {escape(shlex.join(exc.argv))}", soft_wrap=True, highlight=False)
    if exc.tail:
        err.print("  [dim]last output:[/]")
        for line in exc.tail.splitlines():
            err.print(f"  [dim]│[/] {escape(line)}", soft_wrap=True, highlight=False)
    if exc.hint:
        err.print(f"  [bold]what to do:[/] {escape(exc.hint)}")
    if not verbose:
        err.print("  [dim](re-run with --verbose to see every command and its output)[/]")


def steps(fn: Callable[[], T], *, verbose: bool) -> T:
    """Run an orchestration function; render a failed step and exit 1, or exit 130 on Ctrl-C."""
    from visionctl.ops.runner import StepFailed

    try:
        return fn()
    except StepFailed as exc:
        failure(exc, verbose=verbose)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def plan_header(dry_run: bool) -> None:
    if dry_run:
        console.print("[bold]Plan[/] (dry run — nothing is executed):")


# -- model pipeline ------------------------------------------------------------------------------

def _stats(stats: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in stats.items())


@contextmanager
def training_progress() -> Iterator[Callable[[str, int, int, dict], None]]:
    """A progress callback for :func:`visionctl.ml.training.train` that draws one bar per epoch;
    logs (CI, nohup) get one line per epoch instead of nothing until the end."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn())
    tasks: dict[str, int] = {}

    def progress(phase: str, done: int, total: int, stats: dict) -> None:
        if not bar.console.is_terminal and done == total and "test_acc" in stats:
            bar.console.print(f"{phase}: {_stats(stats)}")
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total, stats="")
        bar.update(tasks[phase], completed=done, stats=_stats(stats))

    with bar:
        yield progress


def trained(card: dict, models_dir) -> None:
    console.print(f"[green]✓[/] {card['name']} {card['version']}: test accuracy "
                  f"{card['metrics']['test_accuracy']:.2%} → {models_dir}/{card['name']}.onnx")


def exported(card: dict) -> None:
    console.print(f"[green]✓[/] exported {card['name']} {card['version']} "
                  f"(accuracy {card['metrics']['test_accuracy']:.2%}, "
                  f"parity {card['export']['parity_max_abs_diff']:.1e})")


def evaluated(dataset: str, report: dict) -> None:
    console.print(f"{dataset}: accuracy {report['accuracy']:.2%} on {report['samples']} test images")
    for path in report["files"]:
        console.print(f"  wrote {path}")


# -- platform ------------------------------------------------------------------------------------

def endpoints(result, dry_run: bool) -> None:
    """The URLs of a deployment, the smoke test's answer and a copy-paste curl."""
    lines = [f"[bold]UI[/]      {result.ui_url}", f"[bold]API[/]     {result.api_url}/predict  (and /v1/models)"]
    if result.tunnel_url:
        lines.append(f"[bold]Public[/]  {result.tunnel_url}  (UI and API)")
    if getattr(result, "note", ""):
        lines.append(f"[dim]{result.note}[/]")
    if result.prediction:
        lines.append(f"[dim]smoke test: label {result.prediction['label']} "
                     f"({result.prediction['confidence']:.1%}) for samples/mnist/7-7.png[/]")
    title = "would be ready at" if dry_run else "Vision AI is up"
    console.print(Panel("\n".join(lines), title=title, expand=False))
    console.print("[bold]Try it:[/]")
    console.print(result.curl, soft_wrap=True, highlight=False, markup=False)


def doctor(checks, missing) -> None:
    table = Table(title="visionctl doctor", title_justify="left")
    for col in ("", "check", "version", "detail", "how to fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        mark = "[green]✓[/]" if c.ok else ("[red]✗[/]" if c.required else "[yellow]–[/]")
        table.add_row(mark, *(escape(text) for text in (c.name, c.version, c.detail, c.hint)))
    console.print(table)
    if missing:
        err.print(f"[bold red]{len(missing)} required check(s) failed:[/] {', '.join(c.name for c in missing)} "
                  "— `visionctl up` needs them (serve/ui/predict do not).")
    else:
        console.print("[green]ready for `visionctl up`[/]")


def status(st) -> None:
    """Deployments, pods and HPAs of :func:`visionctl.ops.status.collect_status`."""
    table = Table(title="deployments", title_justify="left")
    for col in ("component", "ready", "up-to-date"):
        table.add_column(col)
    for d in sorted(st.deployments, key=lambda d: d["component"]):
        colour = "green" if d["ready"] >= d["desired"] > 0 else "yellow"
        table.add_row(d["component"], f"[{colour}]{d['ready']}/{d['desired']}[/]", str(d["updated"]))
    console.print(table)
    table = Table(title="pods", title_justify="left")
    for col in ("pod", "status", "ready", "restarts"):
        table.add_column(col)
    for p in sorted(st.pods, key=lambda p: p["name"]):
        table.add_row(p["name"], p["phase"], p["ready"], str(p["restarts"]))
    console.print(table)
    for h in st.hpas:
        cpu = "unknown (metrics pending)" if h["cpu"] is None else f"{h['cpu']}%"
        console.print(f"[bold]HPA[/] {h['name']}: {h['replicas']} replicas ({h['min']}–{h['max']}), "
                      f"CPU {cpu} / target {h['target']}%")


def models(models: list[dict]) -> None:
    for m in models:
        acc = (m.get("metrics") or {}).get("test_accuracy") or m.get("test_accuracy")
        console.print(f"[bold]model[/] {m.get('name')} {m.get('version', '?')}"
                      + (f" (test accuracy {acc:.2%})" if isinstance(acc, (int, float)) else ""))


# -- local ---------------------------------------------------------------------------------------

def predictions(title: str, results: list[dict], labels_for: Callable[[int], list[str]]) -> None:
    """One row per image: label, confidence, the verdict and the top 3 (``labels_for(n)`` names n
    classes). An out-of-distribution image says so in words; an abstained one (strict mode) shows no
    label."""
    table = Table(title=title, title_justify="left")
    for col in ("image", "label", "confidence", "verdict", "top 3"):
        table.add_column(col, overflow="fold")
    for r in results:
        if "error" in r:
            e = r["error"]
            table.add_row(r["file"], "[red]error[/]", str(e["status"]), "", f"{e['code']}: {e['message']}")
            continue
        probs = r["probabilities"]
        labels = labels_for(len(probs))
        top = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:3]
        label = "[dim]none (abstained)[/]" if r["label"] is None else f"[bold]{escape(r['label'])}[/]"
        table.add_row(r["file"], label, f"{r['confidence']:.1%}", verdict(r),
                      ", ".join(f"{escape(labels[i])} {probs[i]:.1%}" for i in top))
    console.print(table)


def verdict(result: dict) -> str:
    """The out-of-distribution verdict of one prediction, as a table cell."""
    if "in_distribution" not in result:  # a server from before the verdict existed
        return "[dim]?[/]"
    if result["in_distribution"]:
        return f"[green]in distribution[/] [dim]({result['ood_score']:.3g})[/]"
    from backend.contract import subject

    text = f"not {subject(result['model'])}"
    return f"[yellow]{escape(text)}[/] [dim]({result['ood_score']:.3g})[/]"


# -- releases ------------------------------------------------------------------------------------

def release_status(state: dict) -> None:
    """``visionctl release status``: who serves, what is being released, and the audit history."""
    console.print(f"[bold]{state['name']}[/]  stable [bold]{state['stable']}[/]")
    if state.get("candidate"):
        share = f"{state['weight']}%" if state["mode"] == "canary" else "shadow copy"
        console.print(f"  candidate [bold]{state['candidate']}[/] ({state['mode']}, {share}) "
                      f"since {state['started_at']}")
    else:
        console.print("  no release running")
    table = Table("at", "actor", "action", "version", "reason", box=None, pad_edge=False)
    for entry in state.get("history", [])[-15:]:
        table.add_row(entry["at"], escape(entry["actor"]), entry["action"], entry.get("version") or "",
                      escape(entry.get("reason", "")))
    console.print(table)
