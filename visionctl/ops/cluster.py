"""The local k3d cluster: create (idempotent), import images, delete.

k3d runs k3s in Docker; k3s ships Traefik (the ingress controller the chart targets) and
metrics-server (for the HPA). The cluster's load balancer port 80 is mapped to
``localhost:<port>``, so the ingress — UI on ``/``, API on ``/predict`` and ``/v1`` — is at
``http://localhost:<port>``.
"""

from __future__ import annotations

import json
import socket

from visionctl.constants import CLUSTER_NAME, DEFAULT_HOST_PORT
from visionctl.ops.runner import Runner, StepFailed

K3D_HINT = "run `visionctl doctor`; `docker ps` must work, and `k3d cluster list` shows existing clusters"


def kube_context(cluster: str) -> str:
    """k3d's kubeconfig context for ``cluster``; every helm/kubectl call names it explicitly so a
    different current context can never receive the deployment."""
    return f"k3d-{cluster}"


def create_argv(cluster: str = CLUSTER_NAME, port: int = DEFAULT_HOST_PORT) -> list[str]:
    return ["k3d", "cluster", "create", cluster, "-p", f"{port}:80@loadbalancer", "--wait"]


def delete_argv(cluster: str = CLUSTER_NAME) -> list[str]:
    return ["k3d", "cluster", "delete", cluster]


def import_argv(refs: list[str], cluster: str = CLUSTER_NAME) -> list[str]:
    return ["k3d", "image", "import", *refs, "--cluster", cluster]


def exists(runner: Runner, cluster: str) -> bool:
    """Whether k3d knows ``cluster`` (``k3d cluster list -o json``)."""
    result = runner.query(["k3d", "cluster", "list", "-o", "json"])
    if not result.ok:
        raise StepFailed("list k3d clusters", f"`k3d cluster list` exited with {result.returncode}",
                         argv=["k3d", "cluster", "list", "-o", "json"], tail=result.stderr.strip()[-2000:],
                         hint=K3D_HINT)
    try:
        clusters = json.loads(result.stdout or "[]")
    except ValueError:
        raise StepFailed("list k3d clusters", "unexpected output from `k3d cluster list -o json`",
                         tail=result.stdout[-2000:], hint="upgrade k3d to v5 or newer") from None
    return any(c.get("name") == cluster for c in clusters if isinstance(c, dict))


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``host:port`` — checked before creating a cluster because k3d's
    own error for a taken port is buried in Docker's output."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ensure(runner: Runner, cluster: str = CLUSTER_NAME, port: int = DEFAULT_HOST_PORT) -> bool:
    """Create the cluster unless it exists; returns True if it was created. In dry-run the plan
    shows the create command marked "if absent" (nothing is queried, so plans are reproducible)."""
    if runner.dry_run:
        runner.run(create_argv(cluster, port), title=f"create k3d cluster {cluster}", note="if absent")
        return True
    if exists(runner, cluster):
        runner.note(f"k3d cluster {cluster} exists", "reused (upgrade in place)")
        return False
    if not port_free(port):
        raise StepFailed(f"create k3d cluster {cluster}", f"localhost:{port} is already in use",
                         hint=f"pick another port with --port, or stop what listens on {port}")
    runner.run(create_argv(cluster, port), title=f"create k3d cluster {cluster}", timeout=600,
               hint=K3D_HINT + f"; if a half-created cluster is left: k3d cluster delete {cluster}")
    return True


def import_images(runner: Runner, refs: list[str], cluster: str = CLUSTER_NAME) -> None:
    runner.run(import_argv(refs, cluster), title="import images into the cluster", timeout=900,
               hint=f"check the images exist (`docker images`) and the cluster runs (`k3d cluster list {cluster}`)")


def delete(runner: Runner, cluster: str = CLUSTER_NAME) -> bool:
    """Delete the cluster if it exists; returns True if something was deleted."""
    if runner.dry_run:
        runner.run(delete_argv(cluster), title=f"delete k3d cluster {cluster}", note="if present")
        return True
    if not exists(runner, cluster):
        runner.note(f"k3d cluster {cluster} does not exist", "nothing to delete")
        return False
    runner.run(delete_argv(cluster), title=f"delete k3d cluster {cluster}", timeout=600, hint=K3D_HINT)
    return True
