"""Platform commands: doctor, build, up, deploy, down, status, logs, tunnel and the ``cluster``
group. Orchestration lives in :mod:`visionctl.ops`; these translate flags into options and hand
results to :mod:`visionctl.cli.render`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from visionctl.cli import render
from visionctl.cli.options import (
    DEFAULT_CLUSTER,
    DEFAULT_PORT,
    ApiKey,
    BaseImage,
    Cluster,
    Component,
    DataDir,
    DryRun,
    Only,
    Port,
    RolloutTimeout,
    Tag,
    TunnelMode,
    TunnelModeOpt,
    Values,
    Verbose,
    Yes,
)

app = typer.Typer()
cluster_app = typer.Typer(help="Create or delete the local k3d cluster (a step of `up`/`down`).", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


def _runner(dry_run: bool, verbose: bool):
    from visionctl.ops.runner import Runner
    return Runner(render.console, dry_run=dry_run, verbose=verbose)


def _target(cluster: str, port: int = DEFAULT_PORT, context: str | None = None):
    from visionctl.ops.deploy import Target
    return Target(cluster=cluster, port=port, kube_context=context)


def _chart(tag: str | None, tunnel: bool, tunnel_mode: TunnelMode, values: list[Path] | None):
    """Chart options shared by `up` and `deploy`."""
    from visionctl.constants import IMAGE_TAG
    from visionctl.ops.deploy import ChartOptions
    return ChartOptions(tag=tag or IMAGE_TAG, tunnel=tunnel, tunnel_mode=tunnel_mode.value,
                        values_files=list(values or []))


@app.command()
def doctor() -> None:
    """Check docker (and its daemon), k3d, helm, kubectl and the Python extras; print install hints."""
    from visionctl.ops import doctor as doc

    checks = doc.run_checks()
    missing = doc.missing_required(checks)
    render.doctor(checks, missing)
    if missing:
        raise typer.Exit(1)


@app.command()
def up(
    cluster: Cluster = DEFAULT_CLUSTER,
    port: Port = DEFAULT_PORT,
    tunnel: Annotated[bool, typer.Option("--tunnel/--no-tunnel",
                                         help="Also expose the platform via Cloudflare Tunnel.")] = False,
    tunnel_mode: TunnelModeOpt = TunnelMode.quick,
    train: Annotated[bool, typer.Option("--train/--no-train",
                                        help="Train models that are missing (else fail).")] = True,
    build: Annotated[bool, typer.Option("--build/--no-build",
                                        help="Build the images (or reuse the local ones).")] = True,
    base_image: BaseImage = None,
    tag: Tag = None,
    values: Values = None,
    api_key: ApiKey = None,
    data_dir: DataDir = None,
    rollout_timeout: RolloutTimeout = 300,
    dry_run: DryRun = False,
    verbose: Verbose = False,
) -> None:
    """Everything: models → images → k3d cluster → helm install → smoke test → URLs. Idempotent."""
    from visionctl.ops import orchestrate

    runner = _runner(dry_run, verbose)
    opts = orchestrate.UpOptions(
        target=_target(cluster, port), chart=_chart(tag, tunnel, tunnel_mode, values),
        train=train, build=build, base_image=base_image, api_key=api_key, data_dir=data_dir,
        rollout_timeout=rollout_timeout)
    if tunnel and not api_key:
        render.err.print("[bold red]WARNING:[/] --tunnel publishes the API on the internet; without --api-key "
                         "(or apiKeys enabled in --values) anyone with the URL can use it.")
    render.plan_header(dry_run)
    result = render.steps(lambda: orchestrate.up(runner, opts), verbose=verbose)
    render.endpoints(result, dry_run)


@app.command()
def deploy(
    cluster: Cluster = DEFAULT_CLUSTER,
    port: Port = DEFAULT_PORT,
    context: Annotated[str | None, typer.Option(
        "--context", envvar="VISION_KUBE_CONTEXT",
        help="Deploy to this existing kube context instead of the k3d cluster: k3d-*, kind-*, minikube, "
             "docker-desktop or k3s (\"default\") are recognised and get their own image-load step; the smoke "
             "test goes through a port-forward.")] = None,
    frontend: Annotated[bool, typer.Option("--frontend/--no-frontend",
                                           help="Also deploy the UI (needs its image).")] = True,
    tunnel: Annotated[bool, typer.Option("--tunnel/--no-tunnel", help="Deploy cloudflared too.")] = False,
    tunnel_mode: Annotated[TunnelMode, typer.Option(help="quick or token (see `up --help`).")] = TunnelMode.quick,
    tag: Tag = None,
    values: Values = None,
    api_key: ApiKey = None,
    rollout_timeout: RolloutTimeout = 300,
    dry_run: DryRun = False,
    verbose: Verbose = False,
) -> None:
    """Load the built images into the cluster, helm upgrade --install, wait, smoke-test."""
    from visionctl.ops import orchestrate

    runner = _runner(dry_run, verbose)
    chart = _chart(tag, tunnel, tunnel_mode, values)
    chart.frontend = frontend
    opts = orchestrate.UpOptions(
        target=_target(cluster, port, context), api_key=api_key, rollout_timeout=rollout_timeout, chart=chart)
    render.plan_header(dry_run)
    run = orchestrate.deploy_to_context if context else orchestrate.deploy_only
    result = render.steps(lambda: run(runner, opts), verbose=verbose)
    render.endpoints(result, dry_run)


@app.command()
def build(
    tag: Tag = None,
    base_image: BaseImage = None,
    only: Annotated[Only | None, typer.Option(help="Build just one image.")] = None,
    dry_run: DryRun = False,
    verbose: Verbose = False,
) -> None:
    """docker build the backend and frontend images (explicit version tag, never latest)."""
    from visionctl.constants import IMAGE_TAG
    from visionctl.ops import images

    runner = _runner(dry_run, verbose)
    which = (only.value,) if only else ("backend", "frontend")
    built = render.steps(lambda: images.build_images(runner, tag=tag or IMAGE_TAG, base_image=base_image,
                                                     only=which), verbose=verbose)
    if not dry_run:
        render.console.print("built: " + ", ".join(img.ref for img in built))


@cluster_app.command("create")
def cluster_create(cluster: Cluster = DEFAULT_CLUSTER, port: Port = DEFAULT_PORT, dry_run: DryRun = False,
                   verbose: Verbose = False) -> None:
    """Create the k3d cluster (load balancer :80 → localhost:PORT) unless it exists."""
    from visionctl.ops import cluster as k3d

    runner = _runner(dry_run, verbose)
    render.steps(lambda: k3d.ensure(runner, cluster, port), verbose=verbose)


@cluster_app.command("delete")
def cluster_delete(cluster: Cluster = DEFAULT_CLUSTER,
                   yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
                   dry_run: DryRun = False, verbose: Verbose = False) -> None:
    """Delete the k3d cluster and everything in it."""
    from visionctl.ops import cluster as k3d

    if not (yes or dry_run):
        typer.confirm(f"Delete k3d cluster {cluster!r} and everything in it?", abort=True)
    runner = _runner(dry_run, verbose)
    render.steps(lambda: k3d.delete(runner, cluster), verbose=verbose)


@app.command()
def down(
    cluster: Cluster = DEFAULT_CLUSTER,
    keep_cluster: Annotated[bool, typer.Option("--keep-cluster", help="Only uninstall the release.")] = False,
    yes: Yes = False,
    dry_run: DryRun = False,
    verbose: Verbose = False,
) -> None:
    """Uninstall the release and delete the k3d cluster. Safe to repeat."""
    from visionctl.ops import orchestrate

    if not (yes or dry_run):
        what = "the vision-ai release" + ("" if keep_cluster else f" and k3d cluster {cluster!r}")
        typer.confirm(f"Remove {what}?", abort=True)
    runner = _runner(dry_run, verbose)
    render.steps(lambda: orchestrate.down(runner, _target(cluster), keep_cluster=keep_cluster), verbose=verbose)
    if not dry_run:
        render.console.print("[green]✓[/] down")


@app.command()
def status(cluster: Cluster = DEFAULT_CLUSTER, port: Port = DEFAULT_PORT, api_key: ApiKey = None,
           verbose: Verbose = False) -> None:
    """Pods, readiness, HPA, model versions and URLs of the deployment."""
    from vision_client import ClientError, VisionClient
    from visionctl.ops import status as st_mod
    from visionctl.ops import tunnel as tun

    runner = _runner(False, verbose)
    target = _target(cluster, port)
    st = render.steps(lambda: st_mod.collect_status(runner, target), verbose=verbose)
    if not (st.deployments or st.pods):
        render.err.print(f"[yellow]nothing deployed[/] in namespace {target.namespace} of {target.context}; "
                         "run `visionctl up`")
        raise typer.Exit(1)
    render.status(st)
    healthy = all(d["ready"] >= d["desired"] > 0 for d in st.deployments)
    try:
        with VisionClient(target.url, api_key=api_key, timeout=5) as client:
            render.models(client.models())
    except ClientError as exc:
        healthy = False
        render.err.print(f"[yellow]API not answering at {target.url}:[/] {exc}")
    render.console.print(f"[bold]UI[/]  {target.url}/    [bold]API[/] {target.url}/predict")
    if any(d["component"] == "cloudflared" for d in st.deployments):
        url = tun.tunnel_url_from_logs(runner, target)
        render.console.print(f"[bold]Public[/] {url or 'not yet known — `visionctl tunnel` waits for it'}")
    raise typer.Exit(0 if healthy else 1)


@app.command()
def logs(
    component: Annotated[Component, typer.Argument(help="Which component's pods.")] = Component.backend,
    cluster: Cluster = DEFAULT_CLUSTER,
    follow: Annotated[bool, typer.Option("--follow", "-F", help="Stream new lines until Ctrl-C.")] = False,
    tail: Annotated[int, typer.Option(min=-1, help="Lines per pod (-1 = all).")] = 100,
) -> None:
    """Logs of a component's pods (all replicas, prefixed with the pod name)."""
    from visionctl.ops import status as st_mod

    runner = _runner(False, False)
    argv = st_mod.logs_argv(_target(cluster), component.value, follow=follow, tail=tail)
    code = render.steps(lambda: runner.passthrough(argv, title=f"logs {component.value}"), verbose=False)
    raise typer.Exit(code)


@app.command()
def tunnel(cluster: Cluster = DEFAULT_CLUSTER,
           timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for cloudflared to get its URL.")] = 120,
           verbose: Verbose = False) -> None:
    """Print the public https://*.trycloudflare.com URL of the quick tunnel (waits for it)."""
    from visionctl.ops import tunnel as tun

    runner = _runner(False, verbose)
    url = render.steps(lambda: tun.tunnel_url(runner, _target(cluster), timeout=timeout), verbose=verbose)
    render.console.print(url, highlight=False, soft_wrap=True)
