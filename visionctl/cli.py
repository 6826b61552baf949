"""visionctl — the one command-line tool for the Vision AI service.

Each command is a thin wrapper: it parses flags, calls a library function in ``visionctl.*`` and
renders the result. Heavy imports (torch, onnxruntime) happen inside commands so ``--help`` is fast.

Exit codes: 0 success, 1 a step or request failed (the message says which and what to do),
2 bad usage (unknown option, invalid value), 130 interrupted.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="Train, serve, package and deploy the Vision AI image classifier.",
                  epilog="Exit codes: 0 ok, 1 failed (the message names the step and what to do), 2 bad usage.",
                  no_args_is_help=True, rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})
cluster_app = typer.Typer(help="Create or delete the local k3d cluster (a step of `up`/`down`).", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
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
    data_dir: Path | None = DataDirOpt,
    models_dir: Path = ModelsDirOpt,
    epochs: int | None = typer.Option(None, min=1, help="Epochs [default: 8 mnist, 5 fashion-mnist]."),
    batch_size: int = typer.Option(64, min=1),
    lr: float = typer.Option(1.0, min=0.0, help="Adadelta learning rate."),
    gamma: float = typer.Option(0.7, min=0.0, max=1.0, help="StepLR decay per epoch."),
    seed: int = typer.Option(1),
    threads: int = typer.Option(2, min=1, help="torch intra-op threads."),
    strategy: Strategy | None = typer.Option(None, help="Fine-tuning: which layers learn [default: all]."),
    init_weights: Path | None = typer.Option(None, help="Start from these weights [fashion-mnist default: <models-dir>/mnist.pt]."),
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
    weights: Path | None = typer.Option(None, help="State dict to convert [default: <models-dir>/<name>.pt]."),
    models_dir: Path = ModelsDirOpt,
    data_dir: Path | None = DataDirOpt,
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
    data_dir: Path | None = DataDirOpt,
    out_dir: Path = typer.Option(Path("docs/evaluation"), help="Where the PNGs go."),
    limit: int = typer.Option(0, min=0, help="Only the first N test images (quick checks; 0 = all)."),
) -> None:
    """Accuracy of the ONNX artifact on the test set, plus confusion-matrix and mistakes PNGs."""
    from visionctl import evaluation
    from visionctl.data import DatasetError

    try:
        report = evaluation.evaluate_model(dataset.value, models_dir=models_dir, data_dir=data_dir, out_dir=out_dir,
                                           limit=limit)
    except (DatasetError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(f"{dataset.value}: accuracy {report['accuracy']:.2%} on {report['samples']} test images")
    for path in report["files"]:
        console.print(f"  wrote {path}")


# ---------------------------------------------------------------------------------------------
# Operating the platform. Orchestration lives in visionctl.{orchestrate,deploy,cluster,images};
# these commands only translate flags into options and render results.
# ---------------------------------------------------------------------------------------------

class Component(str, Enum):
    backend = "backend"
    frontend = "frontend"
    cloudflared = "cloudflared"


class TunnelMode(str, Enum):
    quick = "quick"
    token = "token"


class Only(str, Enum):
    backend = "backend"
    frontend = "frontend"


def _default(name: str):
    from visionctl import constants
    return getattr(constants, name)


ClusterOpt = typer.Option("vision-ai", "--cluster", "-c", envvar="VISION_CLUSTER", help="k3d cluster name.")
PortOpt = typer.Option(8080, "--port", "-p", min=1, max=65535, envvar="VISION_HOST_PORT",
                       help="localhost port mapped to the cluster's load balancer (the ingress).")
DryRunOpt = typer.Option(False, "--dry-run", help="Print the exact command plan; run nothing.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Echo every external command and stream its output.")
TagOpt = typer.Option(None, "--tag", help="Image tag [default: the visionctl version].")
BaseImageOpt = typer.Option(None, "--base-image", envvar="VISION_BASE_IMAGE",
                            help="Base image for both Dockerfiles (build arg BASE_IMAGE) [default: python:3.11-slim].")
ApiKeyOpt = typer.Option(None, "--api-key", envvar="VISION_API_KEY", help="API key sent as X-API-Key.")
ValuesOpt = typer.Option(None, "--values", "-f", exists=True, dir_okay=False,
                         help="Extra Helm values file (repeatable), e.g. API keys or resources.")
RolloutTimeoutOpt = typer.Option(300, min=10, help="Seconds to wait for each rollout.")


def _runner(dry_run: bool, verbose: bool):
    from visionctl.runner import Runner
    return Runner(console, dry_run=dry_run, verbose=verbose)


def _steps(fn, runner):
    """Run an orchestration function; render a failed step (which, why, output tail, what to do)."""
    from visionctl.runner import StepFailed, render_failure

    try:
        return fn()
    except StepFailed as exc:
        render_failure(err, exc, verbose=runner.verbose)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130)


def _target(cluster: str, port: int, context: str | None = None):
    from visionctl.deploy import Target
    return Target(cluster=cluster, port=port, kube_context=context)


def _chart(tag: str | None, tunnel: bool, tunnel_mode: TunnelMode, values: list[Path] | None):
    """Chart options shared by `up` and `deploy`."""
    from visionctl.deploy import ChartOptions
    return ChartOptions(tag=tag or _default("IMAGE_TAG"), tunnel=tunnel, tunnel_mode=tunnel_mode.value,
                        values_files=list(values or []))


def _print_endpoints(result, dry_run: bool) -> None:
    from rich.panel import Panel

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


@app.command()
def doctor() -> None:
    """Check docker (and its daemon), k3d, helm, kubectl and the Python extras; print install hints."""
    from rich.markup import escape
    from rich.table import Table

    from visionctl import doctor as doc

    checks = doc.run_checks()
    table = Table(title="visionctl doctor", title_justify="left")
    for col in ("", "check", "version", "detail", "how to fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        mark = "[green]✓[/]" if c.ok else ("[red]✗[/]" if c.required else "[yellow]–[/]")
        table.add_row(mark, *(escape(text) for text in (c.name, c.version, c.detail, c.hint)))
    console.print(table)
    missing = doc.missing_required(checks)
    if missing:
        err.print(f"[bold red]{len(missing)} required check(s) failed:[/] {', '.join(c.name for c in missing)} "
                  "— `visionctl up` needs them (serve/ui/predict do not).")
        raise typer.Exit(1)
    console.print("[green]ready for `visionctl up`[/]")


@app.command()
def up(
    cluster: str = ClusterOpt,
    port: int = PortOpt,
    tunnel: bool = typer.Option(False, "--tunnel/--no-tunnel", help="Also expose the platform via Cloudflare Tunnel."),
    tunnel_mode: TunnelMode = typer.Option(TunnelMode.quick, help="quick: random *.trycloudflare.com URL, no account; "
                                           "token: named tunnel (token Secret via --values)."),
    train: bool = typer.Option(True, "--train/--no-train", help="Train models that are missing (else fail)."),
    build: bool = typer.Option(True, "--build/--no-build", help="Build the images (or reuse the local ones)."),
    base_image: str | None = BaseImageOpt,
    tag: str | None = TagOpt,
    values: list[Path] | None = ValuesOpt,
    api_key: str | None = ApiKeyOpt,
    data_dir: Path | None = DataDirOpt,
    rollout_timeout: int = RolloutTimeoutOpt,
    dry_run: bool = DryRunOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Everything: models → images → k3d cluster → helm install → smoke test → URLs. Idempotent."""
    from visionctl import orchestrate

    runner = _runner(dry_run, verbose)
    opts = orchestrate.UpOptions(
        target=_target(cluster, port), chart=_chart(tag, tunnel, tunnel_mode, values),
        train=train, build=build, base_image=base_image, api_key=api_key, data_dir=data_dir,
        rollout_timeout=rollout_timeout)
    if tunnel and not api_key:
        err.print("[bold red]WARNING:[/] --tunnel publishes the API on the internet; without --api-key "
                  "(or apiKeys enabled in --values) anyone with the URL can use it.")
    if dry_run:
        console.print("[bold]Plan[/] (dry run — nothing is executed):")
    result = _steps(lambda: orchestrate.up(runner, opts), runner)
    _print_endpoints(result, dry_run)


@app.command()
def deploy(
    cluster: str = ClusterOpt,
    port: int = PortOpt,
    context: str | None = typer.Option(
        None, "--context", envvar="VISION_KUBE_CONTEXT",
        help="Deploy to this existing kube context instead of the k3d cluster: k3d-*, kind-*, minikube, "
             "docker-desktop or k3s (\"default\") are recognised and get their own image-load step; the smoke "
             "test goes through a port-forward."),
    frontend: bool = typer.Option(True, "--frontend/--no-frontend", help="Also deploy the UI (needs its image)."),
    tunnel: bool = typer.Option(False, "--tunnel/--no-tunnel", help="Deploy cloudflared too."),
    tunnel_mode: TunnelMode = typer.Option(TunnelMode.quick, help="quick or token (see `up --help`)."),
    tag: str | None = TagOpt,
    values: list[Path] | None = ValuesOpt,
    api_key: str | None = ApiKeyOpt,
    rollout_timeout: int = RolloutTimeoutOpt,
    dry_run: bool = DryRunOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Load the built images into the cluster, helm upgrade --install, wait, smoke-test."""
    from visionctl import orchestrate

    runner = _runner(dry_run, verbose)
    chart = _chart(tag, tunnel, tunnel_mode, values)
    chart.frontend = frontend
    opts = orchestrate.UpOptions(
        target=_target(cluster, port, context), api_key=api_key, rollout_timeout=rollout_timeout, chart=chart)
    if dry_run:
        console.print("[bold]Plan[/] (dry run — nothing is executed):")
    run = orchestrate.deploy_to_context if context else orchestrate.deploy_only
    result = _steps(lambda: run(runner, opts), runner)
    _print_endpoints(result, dry_run)


@app.command()
def build(
    tag: str | None = TagOpt,
    base_image: str | None = BaseImageOpt,
    only: Only | None = typer.Option(None, help="Build just one image."),
    dry_run: bool = DryRunOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """docker build the backend and frontend images (explicit version tag, never latest)."""
    from visionctl import images

    runner = _runner(dry_run, verbose)
    which = (only.value,) if only else ("backend", "frontend")
    built = _steps(lambda: images.build_images(runner, tag=tag or _default("IMAGE_TAG"), base_image=base_image,
                                               only=which), runner)
    if not dry_run:
        console.print("built: " + ", ".join(img.ref for img in built))


@cluster_app.command("create")
def cluster_create(cluster: str = ClusterOpt, port: int = PortOpt, dry_run: bool = DryRunOpt,
                   verbose: bool = VerboseOpt) -> None:
    """Create the k3d cluster (load balancer :80 → localhost:PORT) unless it exists."""
    from visionctl import cluster as k3d

    runner = _runner(dry_run, verbose)
    _steps(lambda: k3d.ensure(runner, cluster, port), runner)


@cluster_app.command("delete")
def cluster_delete(cluster: str = ClusterOpt, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
                   dry_run: bool = DryRunOpt, verbose: bool = VerboseOpt) -> None:
    """Delete the k3d cluster and everything in it."""
    from visionctl import cluster as k3d

    if not (yes or dry_run):
        typer.confirm(f"Delete k3d cluster {cluster!r} and everything in it?", abort=True)
    runner = _runner(dry_run, verbose)
    _steps(lambda: k3d.delete(runner, cluster), runner)


@app.command()
def down(
    cluster: str = ClusterOpt,
    keep_cluster: bool = typer.Option(False, "--keep-cluster", help="Only uninstall the release."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = DryRunOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Uninstall the release and delete the k3d cluster. Safe to repeat."""
    from visionctl import orchestrate

    if not (yes or dry_run):
        what = "the vision-ai release" + ("" if keep_cluster else f" and k3d cluster {cluster!r}")
        typer.confirm(f"Remove {what}?", abort=True)
    runner = _runner(dry_run, verbose)
    _steps(lambda: orchestrate.down(runner, _target(cluster, 8080), keep_cluster=keep_cluster), runner)
    if not dry_run:
        console.print("[green]✓[/] down")


@app.command()
def status(cluster: str = ClusterOpt, port: int = PortOpt, api_key: str | None = ApiKeyOpt,
           verbose: bool = VerboseOpt) -> None:
    """Pods, readiness, HPA, model versions and URLs of the deployment."""
    from rich.table import Table

    from visionctl import deploy as dep
    from visionctl.client import ClientError, VisionClient

    runner = _runner(False, verbose)
    target = _target(cluster, port)
    st = _steps(lambda: dep.collect_status(runner, target), runner)
    if not (st.deployments or st.pods):
        err.print(f"[yellow]nothing deployed[/] in namespace {target.namespace} of {target.context}; run `visionctl up`")
        raise typer.Exit(1)
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
    healthy = all(d["ready"] >= d["desired"] > 0 for d in st.deployments)
    try:
        with VisionClient(target.url, api_key=api_key, timeout=5) as client:
            models = client.models()
        for m in models:
            acc = (m.get("metrics") or {}).get("test_accuracy") or m.get("test_accuracy")
            console.print(f"[bold]model[/] {m.get('name')} {m.get('version', '?')}"
                          + (f" (test accuracy {acc:.2%})" if isinstance(acc, (int, float)) else ""))
    except ClientError as exc:
        healthy = False
        err.print(f"[yellow]API not answering at {target.url}:[/] {exc}")
    console.print(f"[bold]UI[/]  {target.url}/    [bold]API[/] {target.url}/predict")
    if any(d["component"] == "cloudflared" for d in st.deployments):
        url = dep.tunnel_url_from_logs(runner, target)
        console.print(f"[bold]Public[/] {url or 'not yet known — `visionctl tunnel` waits for it'}")
    raise typer.Exit(0 if healthy else 1)


@app.command()
def logs(
    component: Component = typer.Argument(Component.backend, help="Which component's pods."),
    cluster: str = ClusterOpt,
    follow: bool = typer.Option(False, "--follow", "-F", help="Stream new lines until Ctrl-C."),
    tail: int = typer.Option(100, min=-1, help="Lines per pod (-1 = all)."),
) -> None:
    """Logs of a component's pods (all replicas, prefixed with the pod name)."""
    from visionctl import deploy as dep

    runner = _runner(False, False)
    argv = dep.logs_argv(_target(cluster, 8080), component.value, follow=follow, tail=tail)
    code = _steps(lambda: runner.passthrough(argv, title=f"logs {component.value}"), runner)
    raise typer.Exit(code)


@app.command()
def tunnel(cluster: str = ClusterOpt,
           timeout: float = typer.Option(120, min=0, help="Seconds to wait for cloudflared to get its URL."),
           verbose: bool = VerboseOpt) -> None:
    """Print the public https://*.trycloudflare.com URL of the quick tunnel (waits for it)."""
    from visionctl import deploy as dep

    runner = _runner(False, verbose)
    url = _steps(lambda: dep.tunnel_url(runner, _target(cluster, 8080), timeout=timeout), runner)
    console.print(url, highlight=False, soft_wrap=True)


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Image files."),
    model: Dataset = typer.Option(Dataset.mnist, "--model", "-m", help="Which model."),
    url: str | None = typer.Option(None, "--url", envvar="VISION_API_URL",
                                      help="API base URL: local serve, http://localhost:8080 (cluster) or the tunnel URL "
                                           "[default: http://127.0.0.1:8080]."),
    api_key: str | None = ApiKeyOpt,
    timeout: float | None = typer.Option(None, min=0.1, envvar="VISION_API_TIMEOUT", help="Seconds per request [default: 10]."),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON answers (one array)."),
) -> None:
    """Classify images through the API: label, confidence and top-3 per image."""
    import json as _json

    from rich.table import Table

    from visionctl.client import ApiError, ApiUnavailable, VisionClient

    try:
        client = VisionClient(url, api_key=api_key, timeout=timeout)
    except ValueError as exc:
        fail(str(exc), 2)
    results, failed = [], 0
    with client:
        for path in images:
            try:
                results.append({"file": str(path), **client.predict(path.read_bytes(), model=model.value)})
            except ApiUnavailable as exc:
                fail(f"{exc}\n  start one with `visionctl serve` (or `visionctl up`), or pass --url")
            except ApiError as exc:
                failed += 1
                results.append({"file": str(path), "error": {"status": exc.status, "code": exc.code,
                                                             "message": exc.message}})
    labels = None
    if as_json:
        console.print_json(_json.dumps(results))
    else:
        table = Table(title=f"{model.value} @ {client.base_url}", title_justify="left")
        for col in ("image", "label", "confidence", "top 3"):
            table.add_column(col, overflow="fold")
        for r in results:
            if "error" in r:
                e = r["error"]
                table.add_row(r["file"], "[red]error[/]", str(e["status"]), f"{e['code']}: {e['message']}")
                continue
            if labels is None:
                try:
                    labels = client.model(model.value)["labels"]
                except Exception:  # top-3 then shows class indices; the prediction itself is fine
                    labels = [str(i) for i in range(len(r["probabilities"]))]
            probs = r["probabilities"]
            top = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:3]
            table.add_row(r["file"], f"[bold]{r['label']}[/]", f"{r['confidence']:.1%}",
                          ", ".join(f"{labels[i]} {probs[i]:.1%}" for i in top))
        console.print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Bind address [default: VISION_HOST or 127.0.0.1; 0.0.0.0 shares it on your network]."),
    port: int | None = typer.Option(None, min=1, max=65535, help="Port [default: VISION_PORT or 8080]."),
    models_dir: Path | None = typer.Option(None, "--models-dir", help="Model folder [default: VISION_MODEL_DIR or models]."),
    models: str | None = typer.Option(None, help="Comma-separated models to load [default: VISION_MODELS or all]."),
    threads: int | None = typer.Option(None, min=1, help="Waitress threads [default: VISION_THREADS or 8]."),
    workers: str | None = typer.Option(None, help="Server processes, ~1 core each: a number, or auto = one per usable CPU (affinity, cgroup quota) [default: VISION_WORKERS or auto]."),
    log_level: str | None = typer.Option(None, help="DEBUG, INFO, WARNING, ERROR [default: VISION_LOG_LEVEL or INFO]."),
) -> None:
    """Run the API locally on Waitress (no Docker, no cluster). Ctrl-C or SIGTERM stops it gracefully.

    Flags override the VISION_* environment variables; the backend validates them (see docs)."""
    import os

    flags = {"VISION_HOST": host, "VISION_PORT": port, "VISION_MODEL_DIR": models_dir, "VISION_MODELS": models,
             "VISION_THREADS": threads, "VISION_WORKERS": workers, "VISION_LOG_LEVEL": log_level}
    os.environ.update({k: str(v) for k, v in flags.items() if v is not None})
    # A developer's server stays on this machine unless asked; the image sets VISION_HOST=0.0.0.0.
    os.environ.setdefault("VISION_HOST", "127.0.0.1")
    try:
        from backend.config import ConfigError
        from backend.errors import ModelLoadError, WorkerError
        from backend.server import serve as run_backend
    except ImportError as exc:
        fail(f"the backend needs the [serve] extra: pip install -e '.[serve]' ({exc})")
    try:
        run_backend()
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    except ModelLoadError as exc:
        fail(f"{exc}\n  train with `visionctl train mnist` or point --models-dir at a folder with <name>.onnx + .json")
    except OSError as exc:
        fail(f"cannot listen: {exc} (is another server on that port? use --port)")
    except WorkerError as exc:
        fail(str(exc))


@app.command()
def ui(
    api_url: str | None = typer.Option(None, "--api-url", envvar="VISION_API_URL",
                                          help="Backend base URL [default: http://127.0.0.1:8080]."),
    port: int = typer.Option(8501, min=1, max=65535, help="Streamlit port."),
    host: str = typer.Option("127.0.0.1", help="Bind address (0.0.0.0 to share on your network)."),
    api_key: str | None = ApiKeyOpt,
) -> None:
    """Run the Streamlit UI locally, talking to a backend (`visionctl serve` or the cluster)."""
    import importlib.util
    import sys

    from visionctl.constants import REPO_ROOT

    if importlib.util.find_spec("streamlit") is None:
        fail("the UI needs the [ui] extra: pip install -e '.[ui]'")
    env = {"VISION_API_URL": api_url or f"http://127.0.0.1:{_default('BACKEND_PORT')}"}
    if api_key:
        env["VISION_API_KEY"] = api_key
    argv = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "frontend" / "app.py"),
            "--server.port", str(port), "--server.address", host, "--server.headless", "true",
            "--browser.gatherUsageStats", "false"]
    console.print(f"UI on [bold]http://{host}:{port}[/] → API {env['VISION_API_URL']}  (Ctrl-C stops)")
    runner = _runner(False, False)
    code = _steps(lambda: runner.passthrough(argv, title="streamlit", env=env, cwd=REPO_ROOT), runner)
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    app()
