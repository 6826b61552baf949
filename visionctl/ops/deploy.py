"""Install the chart on a cluster (k3d by default, or any kube context): the target, the chart
options, ``helm upgrade --install`` with rollout waits, and uninstall. Smoke tests, the tunnel URL
and status live in :mod:`.smoke`, :mod:`.tunnel` and :mod:`.status`.

Every helm/kubectl call names the kube context and namespace explicitly (never the user's
"current" context), so ``visionctl`` cannot touch another cluster by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from visionctl.constants import (
    CHART_DIR,
    CLUSTER_NAME,
    DEFAULT_HOST_PORT,
    IMAGE_TAG,
    MANIFESTS_DIR,
    NAMESPACE,
    RELEASE_NAME,
    REPO_ROOT,
)
from visionctl.ops.cluster import kube_context
from visionctl.ops.images import project_images
from visionctl.ops.runner import Runner, StepFailed

COMPONENTS = ("backend", "frontend", "cloudflared")
TUNNEL_MODES = ("quick", "token")
IMAGE_ID_ANNOTATION = "visionctl/image-id"
# The plain manifests' Namespace (Pod Security labels): applied before the chart on every path.
NAMESPACE_MANIFEST = f"{MANIFESTS_DIR}/00-namespace.yaml"


@dataclass(frozen=True)
class Target:
    """Where the platform lives: one cluster (the k3d one, or any ``kube_context``), one Helm
    release, one namespace."""

    cluster: str = CLUSTER_NAME
    port: int = DEFAULT_HOST_PORT
    namespace: str = NAMESPACE
    release: str = RELEASE_NAME
    kube_context: str | None = None

    @property
    def context(self) -> str:
        return self.kube_context or kube_context(self.cluster)

    @property
    def url(self) -> str:
        """The ingress on localhost: UI at ``/``, API at ``/predict`` and ``/v1/...``."""
        return f"http://localhost:{self.port}"

    def deployment(self, component: str) -> str:
        # The chart's fullname is the release name when it contains the chart name ("vision-ai").
        return f"{self.release}-{component}"

    def kubectl(self, *args: str) -> list[str]:
        return ["kubectl", "--context", self.context, "--namespace", self.namespace, *args]

    def helm(self, *args: str) -> list[str]:
        return ["helm", *args, "--kube-context", self.context, "--namespace", self.namespace]


@dataclass
class ChartOptions:
    """What ``up``/``deploy`` set on the chart; everything else comes from the chart's values or
    the user's own ``--values`` files."""

    tag: str = IMAGE_TAG
    frontend: bool = True  # the chart's default is off (backend-only); visionctl ships the UI
    tunnel: bool = False
    tunnel_mode: str = "quick"
    values_files: list[Path] = field(default_factory=list)
    image_ids: dict[str, str] = field(default_factory=dict)  # component → local image ID


def helm_argv(target: Target, opts: ChartOptions) -> list[str]:
    backend, frontend = project_images(opts.tag)
    argv = target.helm("upgrade", "--install", target.release, CHART_DIR, "--create-namespace")
    for values in opts.values_files:
        argv += ["--values", str(values)]
    for img in (backend, frontend):
        argv += ["--set", f"{img.component}.image.repository={img.repository}",
                 "--set", f"{img.component}.image.tag={img.tag}"]
    argv += ["--set", f"frontend.enabled={str(opts.frontend).lower()}"]
    argv += ["--set", f"cloudflared.enabled={str(opts.tunnel).lower()}"]
    if opts.tunnel:
        argv += ["--set", f"cloudflared.mode={opts.tunnel_mode}"]
    for component, image_id in sorted(opts.image_ids.items()):
        # Same tag, new content (a rebuild) → new annotation → rolling restart onto the new image.
        argv += ["--set-string", f"{component}.podAnnotations.{IMAGE_ID_ANNOTATION}={image_id}"]
    return argv


def rollout_argv(target: Target, component: str, timeout: int) -> list[str]:
    return target.kubectl("rollout", "status", f"deployment/{target.deployment(component)}", f"--timeout={timeout}s")


def ensure_namespace(runner: Runner, target: Target) -> None:
    """``kubectl apply`` the plain manifests' Namespace, so the chart's namespace carries the same
    Pod Security labels ("restricted" enforced) as ``kubectl apply -f deploy/manifests/``."""
    runner.run(target.kubectl("apply", "-f", NAMESPACE_MANIFEST), title=f"namespace {target.namespace} "
               "(Pod Security restricted)", cwd=REPO_ROOT, timeout=120,
               hint=f"is the cluster reachable? `kubectl --context {target.context} get nodes`")


def install(runner: Runner, target: Target, opts: ChartOptions, *, rollout_timeout: int = 300) -> None:
    """``helm upgrade --install`` (idempotent: a second run upgrades in place), then wait for each
    Deployment's rollout. Rollouts wait on the readiness probes (``/readyz`` = models warmed up)."""
    if not runner.dry_run and not (REPO_ROOT / CHART_DIR / "Chart.yaml").is_file():
        raise StepFailed("helm upgrade", f"chart not found at {REPO_ROOT / CHART_DIR}",
                         hint="run visionctl from a checkout of the project")
    runner.run(helm_argv(target, opts), title=f"helm upgrade --install {target.release}", cwd=REPO_ROOT, timeout=600,
               hint=f"`helm status {target.release} -n {target.namespace} --kube-context {target.context}`; "
                    "an invalid value is named in the error above")
    components = ["backend"] + (["frontend"] if opts.frontend else []) + (["cloudflared"] if opts.tunnel else [])
    for component in components:
        runner.run(rollout_argv(target, component, rollout_timeout), title=f"wait for {component} rollout",
                   timeout=rollout_timeout + 30,
                   hint=f"`visionctl status` and `visionctl logs {component}`; `kubectl --context {target.context} "
                        f"-n {target.namespace} describe pods` shows image or probe problems")


def uninstall(runner: Runner, target: Target) -> None:
    """``helm uninstall`` if the release exists (no error when it does not)."""
    if not runner.dry_run:
        status = runner.query(target.helm("status", target.release))
        if not status.ok:
            runner.note(f"release {target.release} is not installed", "nothing to uninstall")
            return
    runner.run(target.helm("uninstall", target.release, "--wait"), title=f"helm uninstall {target.release}",
               note="if installed", timeout=600, hint="`helm list -A` shows what is installed")
