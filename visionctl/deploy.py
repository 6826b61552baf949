"""Install and operate the chart on a cluster (k3d by default, or any kube context):
``helm upgrade --install``, rollout waits, smoke test through the ingress or a port-forward,
status, logs, uninstall and the public tunnel URL.

Every helm/kubectl call names the kube context and namespace explicitly (never the user's
"current" context), so ``visionctl`` cannot touch another cluster by accident.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from visionctl.client import ApiError, ApiUnavailable, VisionClient, encode_image
from visionctl.cluster import kube_context
from visionctl.constants import (
    BACKEND_PORT,
    CHART_DIR,
    CLUSTER_NAME,
    DEFAULT_HOST_PORT,
    IMAGE_TAG,
    MANIFESTS_DIR,
    NAMESPACE,
    RELEASE_NAME,
    REPO_ROOT,
)
from visionctl.images import project_images
from visionctl.runner import Runner, StepFailed, stop_process

COMPONENTS = ("backend", "frontend", "cloudflared")
TUNNEL_MODES = ("quick", "token")
SMOKE_SAMPLE = Path("samples/mnist/7-7.png")
SMOKE_LABEL = "7"
TUNNEL_METRICS_PORT = 2000  # cloudflared.metricsPort in the chart
TRYCLOUDFLARE_RE = re.compile(r"https://[a-z0-9-]+\.trycloudflare\.com")
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


# -- smoke test and URLs --------------------------------------------------------------------------

def curl_command(endpoint: str, image: bytes) -> str:
    """The copy-paste curl for ``POST <endpoint>/predict`` with a real image inlined."""
    body = json.dumps({"base64": encode_image(image)})
    return (f'curl -X POST "{endpoint.rstrip("/")}/predict" -H "Content-Type: application/json" '
            f"-d {shlex.quote(body)}")


def smoke_test(url: str, *, api_key: str | None = None, timeout: float = 120, interval: float = 2,
               sample: Path = REPO_ROOT / SMOKE_SAMPLE, expected: str = SMOKE_LABEL) -> dict:
    """POST the sample digit to ``<url>/predict`` until it answers (the ingress route can lag the
    rollout by a few seconds) and check the label. Returns the prediction."""
    image = sample.read_bytes()
    client = VisionClient(url, api_key=api_key, timeout=10)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            result = client.predict_default(image)
        except (ApiUnavailable, ApiError) as exc:
            last = str(exc)
            if isinstance(exc, ApiError) and exc.status in (400, 401, 403, 413, 415, 422):
                break  # the API answered and refused: waiting will not help
        else:
            if result.get("label") != expected:
                raise StepFailed("smoke test", f"POST {url}/predict returned label {result.get('label')!r} "
                                               f"for {sample.name}, expected {expected!r}",
                                 hint="the deployed model may be wrong: check `visionctl status` (model versions)")
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise StepFailed("smoke test", f"POST {url}/predict failed: {last}",
                     hint="pass --api-key (or VISION_API_KEY) if API keys are enabled; otherwise see "
                          "`visionctl status` and `visionctl logs backend`")


# -- tunnel ---------------------------------------------------------------------------------------

def tunnel_url_from_logs(runner: Runner, target: Target) -> str | None:
    """The last ``https://*.trycloudflare.com`` URL in cloudflared's log, if any."""
    result = runner.query(target.kubectl("logs", f"deployment/{target.deployment('cloudflared')}", "--tail=500"))
    urls = TRYCLOUDFLARE_RE.findall(result.stdout + result.stderr) if result.ok else []
    return urls[-1] if urls else None


def tunnel_url_from_metrics(runner: Runner, target: Target, *, timeout: float = 15) -> str | None:
    """Read ``/quicktunnel`` (``{"hostname": ...}``) from cloudflared's metrics port through a
    short-lived ``kubectl port-forward`` to a free local port."""
    import requests

    local = _free_port()
    argv = target.kubectl("port-forward", f"deployment/{target.deployment('cloudflared')}",
                          f"{local}:{TUNNEL_METRICS_PORT}", "--address", "127.0.0.1")
    if runner.verbose:
        runner.console.print(f"[dim]$ {shlex.join(argv)}[/]", highlight=False)
    try:
        proc = subprocess.Popen(argv, env=runner.environ(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError:
        return None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                resp = requests.get(f"http://127.0.0.1:{local}/quicktunnel", timeout=2)
                hostname = (resp.json() or {}).get("hostname") if resp.ok else None
                if hostname:
                    return hostname if hostname.startswith("https://") else f"https://{hostname}"
                return None  # cloudflared answers but has no hostname yet
            except (requests.RequestException, ValueError, AttributeError):
                time.sleep(0.3)
        return None
    finally:
        stop_process(proc)


def tunnel_url(runner: Runner, target: Target, *, timeout: float = 120, interval: float = 3,
               sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait up to ``timeout`` seconds for the quick tunnel's public URL (metrics endpoint first,
    then the log line), raising :class:`StepFailed` with what to check when it never appears."""
    deadline = time.monotonic() + timeout
    while True:
        url = tunnel_url_from_metrics(runner, target) or tunnel_url_from_logs(runner, target)
        if url:
            return url
        if time.monotonic() >= deadline:
            raise StepFailed("tunnel URL", f"no *.trycloudflare.com URL within {timeout:g}s",
                             hint="is the tunnel on (`visionctl up --tunnel`) and in quick mode? "
                                  "`visionctl logs cloudflared` shows its connection attempts; token mode "
                                  "uses the hostnames configured in the Cloudflare dashboard instead")
        sleep(interval)


@contextmanager
def port_forward(runner: Runner, target: Target, resource: str, remote: int, *, timeout: float = 30):
    """``kubectl port-forward <resource> <free local port>:<remote>`` for the duration of the
    block; yields ``http://127.0.0.1:<port>`` once the local port accepts connections. Works on
    every cluster (NetworkPolicy does not apply to it), so it is the smoke test's universal route."""
    local = _free_port()
    argv = target.kubectl("port-forward", resource, f"{local}:{remote}", "--address", "127.0.0.1")
    if runner.verbose:
        runner.console.print(f"[dim]$ {shlex.join(argv)}[/]", highlight=False)
    try:
        proc = subprocess.Popen(argv, env=runner.environ(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise StepFailed("port-forward", f"cannot start kubectl: {exc.strerror or exc}", argv=argv) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise StepFailed("port-forward", f"kubectl port-forward exited with {proc.returncode}", argv=argv,
                                 tail=(proc.stderr.read() if proc.stderr else "")[-2000:],
                                 hint=f"`kubectl --context {target.context} -n {target.namespace} get pods`")
            try:
                with socket.create_connection(("127.0.0.1", local), timeout=1):
                    break
            except OSError:
                if time.monotonic() >= deadline:
                    raise StepFailed("port-forward", f"127.0.0.1:{local} not open within {timeout:g}s",
                                     argv=argv) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{local}"
    finally:
        stop_process(proc)


def smoke_test_via_port_forward(runner: Runner, target: Target, *, api_key: str | None = None,
                                timeout: float = 120) -> dict:
    with port_forward(runner, target, f"svc/{target.deployment('backend')}", BACKEND_PORT) as url:
        return smoke_test(url, api_key=api_key, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- status and logs ------------------------------------------------------------------------------

def selector(target: Target, component: str | None = None) -> str:
    sel = f"app.kubernetes.io/instance={target.release}"
    return sel + (f",app.kubernetes.io/component={component}" if component else "")


def logs_argv(target: Target, component: str, *, follow: bool = False, tail: int = 100) -> list[str]:
    argv = target.kubectl("logs", "-l", selector(target, component), "--all-containers", "--prefix",
                          f"--tail={tail}", "--max-log-requests=10")
    return argv + (["--follow"] if follow else [])


@dataclass
class Status:
    deployments: list[dict]
    pods: list[dict]
    hpas: list[dict]


def collect_status(runner: Runner, target: Target) -> Status:
    """Deployments, pods and HPAs of the release, summarised from ``kubectl get -o json``."""
    argv = target.kubectl("get", "deployments,pods,hpa", "-l", selector(target), "-o", "json")
    result = runner.query(argv)
    if not result.ok:
        raise StepFailed("read cluster status", f"`kubectl get` exited with {result.returncode}", argv=argv,
                         tail=result.stderr.strip()[-2000:],
                         hint="is the cluster running? `k3d cluster list`; `visionctl up` creates it")
    try:
        items = json.loads(result.stdout).get("items", [])
    except ValueError:
        raise StepFailed("read cluster status", "kubectl printed something that is not JSON",
                         tail=result.stdout[-2000:]) from None
    status = Status([], [], [])
    for item in items:
        kind, meta, spec, st = item.get("kind"), item.get("metadata", {}), item.get("spec", {}), item.get("status", {})
        component = meta.get("labels", {}).get("app.kubernetes.io/component", "")
        if kind == "Deployment":
            status.deployments.append({"name": meta.get("name"), "component": component,
                                       "ready": st.get("readyReplicas", 0), "desired": spec.get("replicas", 0),
                                       "updated": st.get("updatedReplicas", 0)})
        elif kind == "Pod":
            containers = st.get("containerStatuses", [])
            waiting = [c["state"]["waiting"].get("reason", "") for c in containers if "waiting" in c.get("state", {})]
            status.pods.append({"name": meta.get("name"), "component": component,
                                "phase": waiting[0] if waiting else st.get("phase", "?"),
                                "ready": f"{sum(bool(c.get('ready')) for c in containers)}/{len(containers)}",
                                "restarts": sum(c.get("restartCount", 0) for c in containers)})
        elif kind == "HorizontalPodAutoscaler":
            cpu = next((m["resource"]["current"].get("averageUtilization") for m in st.get("currentMetrics") or []
                        if m.get("type") == "Resource" and m.get("resource", {}).get("name") == "cpu"), None)
            target_cpu = next((m["resource"]["target"].get("averageUtilization") for m in spec.get("metrics") or []
                               if m.get("type") == "Resource" and m.get("resource", {}).get("name") == "cpu"), None)
            status.hpas.append({"name": meta.get("name"), "replicas": st.get("currentReplicas", 0),
                                "min": spec.get("minReplicas", 1), "max": spec.get("maxReplicas"),
                                "cpu": cpu, "target": target_cpu})
    return status
