"""``visionctl up`` / ``down``: the whole platform in one idempotent plan.

up: preflight → models (reuse, or train if missing) → docker build ×2 → k3d cluster (if absent)
→ k3d image import → helm upgrade --install → rollout waits → smoke test POST /predict through the
ingress → tunnel URL (when enabled) → URLs and a copy-paste curl.

Each step goes through one :class:`~visionctl.ops.runner.Runner`, so ``--dry-run`` prints exactly the
commands a real run executes, and a failure names its step and what to do.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from backend.model import card as modelcard
from visionctl.constants import MODEL_NAMES, REPO_ROOT
from visionctl.ops import cluster, deploy, distro, doctor, images, smoke, tunnel
from visionctl.ops.deploy import ChartOptions, Target
from visionctl.ops.runner import Runner, StepFailed

MODELS_DIR = REPO_ROOT / "models"  # the backend image bakes in models/ from the build context
REQUIRED_TOOLS = ("docker", "k3d", "helm", "kubectl")


@dataclass
class UpOptions:
    target: Target = field(default_factory=Target)
    chart: ChartOptions = field(default_factory=ChartOptions)
    train: bool = True
    build: bool = True
    base_image: str | None = None
    api_key: str | None = None
    models_dir: Path | None = None  # None: MODELS_DIR (what the backend image bakes in)
    data_dir: Path | None = None
    rollout_timeout: int = 300
    smoke_timeout: float = 120
    tunnel_timeout: float = 120


@dataclass
class UpResult:
    ui_url: str
    api_url: str
    curl: str
    tunnel_url: str | None = None
    prediction: dict | None = None
    cluster_created: bool = False
    note: str = ""  # how to reach the URLs (e.g. the port-forward to run first)


def preflight(runner: Runner, tools: tuple[str, ...] = REQUIRED_TOOLS) -> None:
    """Fail before doing anything if a required tool is missing, with the doctor's install hints."""
    detail = ", ".join(f"{t} (daemon reachable)" if t == "docker" else t for t in tools) + " on PATH"

    def check() -> None:
        checks = doctor.run_checks(runner.environ(), include_extras=False)
        wanted = [c for c in doctor.missing_required(checks) if c.name.split()[0] in tools]
        if wanted:
            raise StepFailed("preflight", "; ".join(f"{c.name}: {c.detail}" for c in wanted),
                             hint=" | ".join(f"{c.name}: {c.hint}" for c in wanted))

    runner.action("preflight", detail, check)


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def ensure_models(runner: Runner, models_dir: Path | None = None, *, train: bool = True,
                  data_dir: Path | None = None) -> None:
    """Reuse ``<name>.onnx`` + ``<name>.json`` when present, else train (mnist first: fashion-mnist
    is fine-tuned from ``mnist.pt``). ``--no-train`` turns a missing model into an error."""
    models_dir = Path(models_dir or MODELS_DIR)
    for name in MODEL_NAMES:
        onnx, card = Path(models_dir) / f"{name}.onnx", Path(models_dir) / f"{name}.json"
        if onnx.is_file() and card.is_file():
            try:
                version = modelcard.read(card).version
            except modelcard.CardError:
                version = "unreadable card"  # the backend will refuse it at start and say why
            runner.note(f"reuse model {name}", f"{_relative(onnx)} (version {version})")
            continue
        if not train:
            raise StepFailed(f"model {name}", f"{_relative(onnx)} or its model card is missing",
                             hint=f"drop --no-train, or run `visionctl train {name}` first")
        argv = [sys.executable, "-m", "visionctl", "train", name, "--models-dir", _relative(models_dir)]
        if data_dir:
            argv += ["--data-dir", str(data_dir)]
        runner.run(argv, title=f"train model {name}", note="missing", cwd=REPO_ROOT, show_output=True,
                   hint="training needs the [train] extra (torch) and the dataset (--data-dir or internet)")


def up(runner: Runner, opts: UpOptions) -> UpResult:
    t = opts.target
    preflight(runner)
    ensure_models(runner, opts.models_dir, train=opts.train, data_dir=opts.data_dir)
    if opts.build:
        images.build_images(runner, tag=opts.chart.tag, base_image=opts.base_image)
    else:
        runner.note("reuse images", ", ".join(img.ref for img in images.project_images(opts.chart.tag)))
    _record_image_ids(runner, opts, step="images", hint="run without --no-build, or `visionctl build`")
    created = cluster.ensure(runner, t.cluster, t.port)
    result = _ship(runner, opts)
    result.cluster_created = created
    if opts.chart.tunnel and opts.chart.tunnel_mode == "quick":
        result.tunnel_url = runner.action(
            "tunnel URL", f"read https://*.trycloudflare.com from deployment/{t.deployment('cloudflared')} "
                          f"(/quicktunnel on :{tunnel.TUNNEL_METRICS_PORT}, else its log)",
            lambda: tunnel.tunnel_url(runner, t, timeout=opts.tunnel_timeout))
    return result


def deploy_only(runner: Runner, opts: UpOptions) -> UpResult:
    """``visionctl deploy``: import the already built images, install, wait, smoke-test."""
    t = opts.target
    if not runner.dry_run and not cluster.exists(runner, t.cluster):
        raise StepFailed("deploy", f"k3d cluster {t.cluster} does not exist",
                         hint=f"`visionctl cluster create --cluster {t.cluster}` or `visionctl up`")
    _record_image_ids(runner, opts, step="deploy", hint="`visionctl build` first")
    return _ship(runner, opts)


def detect_distro(runner: Runner, context: str) -> distro.Distro:
    """The distribution behind ``context``: from its name, else (not in dry-run) from the labels
    of its nodes; unknown → a clear failure with the manual steps."""
    found = distro.from_context(context)
    if found is None and not runner.dry_run:
        result = runner.query(["kubectl", "--context", context, "get", "nodes", "-o", "json"])
        if not result.ok:
            raise StepFailed("detect cluster", f"kube context {context!r} is not reachable",
                             argv=["kubectl", "--context", context, "get", "nodes"],
                             tail=result.stderr.strip()[-2000:], hint="`kubectl config get-contexts` lists them")
        try:
            found = distro.from_nodes(context, json.loads(result.stdout).get("items", []))
        except ValueError:
            found = None
    if found is None:
        raise StepFailed("detect cluster", f"cannot tell which distribution context {context!r} is "
                         f"(known: {', '.join(distro.DISTROS)})", hint=distro.MANUAL_STEPS)
    runner.note(f"cluster: {found.name}" + (f" {found.cluster}" if found.cluster else ""), f"context {context}")
    return found


def deploy_to_context(runner: Runner, opts: UpOptions) -> UpResult:
    """``visionctl deploy --context NAME``: load the built images the way that distribution needs,
    label the namespace, helm upgrade --install, wait, smoke-test through a port-forward (the one
    route that works on every cluster)."""
    t = opts.target
    found = detect_distro(runner, t.context)
    _record_image_ids(runner, opts, step="deploy",
                      hint="`visionctl build` first (or `--no-frontend` to deploy the API with the backend image only)")
    refs = [img.ref for img in _images(opts)]
    for title, argv in found.load_steps(refs):
        runner.run(argv, title=title, timeout=900, hint="check the images exist (`docker images`) and the cluster "
                   f"runs; manual steps: {distro.MANUAL_STEPS}")
    if not found.load_steps(refs):
        runner.note("images: nothing to load", "Docker Desktop's cluster uses Docker's own images")
    deploy.ensure_namespace(runner, t)
    deploy.install(runner, t, opts.chart, rollout_timeout=opts.rollout_timeout)
    backend = f"svc/{t.deployment('backend')}"
    prediction = runner.action(
        "smoke test", f"kubectl port-forward {backend} <free port>:8080, POST /predict with "
                      f"{smoke.SMOKE_SAMPLE}, expect label {smoke.SMOKE_LABEL}",
        lambda: smoke.smoke_test_via_port_forward(runner, t, api_key=opts.api_key, timeout=opts.smoke_timeout))
    url = "http://localhost:8080"
    curl = smoke.curl_command(url, (REPO_ROOT / smoke.SMOKE_SAMPLE).read_bytes())
    forward = f"kubectl --context {t.context} -n {t.namespace} port-forward"
    note = f"first run: {forward} {backend} 8080:8080" + (
        f"  and  {forward} svc/{t.deployment('frontend')} 8501:8501" if opts.chart.frontend else "")
    return UpResult(ui_url="http://localhost:8501/" if opts.chart.frontend else "(UI not deployed)", api_url=url,
                    curl=curl, prediction=prediction, note=note)


def _images(opts: UpOptions) -> list[images.Image]:
    return [img for img in images.project_images(opts.chart.tag)
            if img.component == "backend" or opts.chart.frontend]


def _record_image_ids(runner: Runner, opts: UpOptions, *, step: str, hint: str) -> None:
    """Remember each image's local ID so a rebuilt image under the same tag rolls the pods."""
    for img in _images(opts):
        if runner.dry_run:  # known only after the build; the plan shows where it goes
            opts.chart.image_ids[img.component] = f"<image ID of {img.ref}>"
            continue
        image_id = images.image_id(runner, img.ref)
        if image_id is None:
            raise StepFailed(step, f"image {img.ref} not found locally", hint=hint)
        opts.chart.image_ids[img.component] = image_id


def _ship(runner: Runner, opts: UpOptions) -> UpResult:
    """The steps shared by ``up`` and ``deploy``: import → helm → rollouts → smoke test."""
    t = opts.target
    cluster.import_images(runner, [img.ref for img in _images(opts)], t.cluster)
    deploy.ensure_namespace(runner, t)
    deploy.install(runner, t, opts.chart, rollout_timeout=opts.rollout_timeout)
    prediction = runner.action(
        "smoke test", f"POST {t.url}/predict with {smoke.SMOKE_SAMPLE}, expect label {smoke.SMOKE_LABEL}",
        lambda: smoke.smoke_test(t.url, api_key=opts.api_key, timeout=opts.smoke_timeout))
    curl = smoke.curl_command(t.url, (REPO_ROOT / smoke.SMOKE_SAMPLE).read_bytes())
    return UpResult(ui_url=f"{t.url}/", api_url=t.url, curl=curl, prediction=prediction)


def down(runner: Runner, target: Target, *, keep_cluster: bool = False) -> None:
    """Uninstall the release, then delete the cluster (unless ``keep_cluster``). Safe to repeat."""
    present = True if runner.dry_run else cluster.exists(runner, target.cluster)
    if present:
        deploy.uninstall(runner, target)
    else:
        runner.note(f"k3d cluster {target.cluster} does not exist", "nothing to uninstall")
    if not keep_cluster and present:
        cluster.delete(runner, target.cluster)

