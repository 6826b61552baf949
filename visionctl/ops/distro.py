"""Which local Kubernetes a kube context points at, and how that cluster gets our locally built
images — the knowledge behind ``visionctl deploy --context NAME``.

Each distribution runs its own container store, so a ``docker build`` image is invisible to it
until loaded the way its docs prescribe: k3d ``k3d image import -c``, kind ``kind load
docker-image --name``, minikube ``minikube image load -p``, k3s ``docker save`` + ``k3s ctr images
import`` (its own containerd, root only), Docker Desktop none (its cluster uses Docker's images).
"""

from __future__ import annotations

from dataclasses import dataclass

DISTROS = ("k3d", "kind", "minikube", "k3s", "docker-desktop")
K3S_TARBALL = "/tmp/vision-ai-images.tar"

MANUAL_STEPS = (
    "load the images into the cluster's nodes the way your distribution documents it (e.g. "
    "`docker save IMAGE | <runtime> import`), then: kubectl apply -f deploy/manifests/ ; "
    "kubectl -n vision-ai rollout status deployment/vision-ai-backend ; "
    "kubectl -n vision-ai port-forward svc/vision-ai-backend 8080:8080 ; "
    "curl -X POST http://localhost:8080/predict -H 'Content-Type: application/json' -d '{\"base64\": ...}' "
    "(docs/deploy.md, \"Deploy on your own cluster\")")


@dataclass(frozen=True)
class Distro:
    name: str  # one of DISTROS
    cluster: str  # k3d/kind cluster name or minikube profile ("" where there is only one)

    def load_steps(self, refs: list[str]) -> list[tuple[str, list[str]]]:
        """(title, argv) of each command that makes ``refs`` visible to the cluster's nodes."""
        if self.name == "k3d":
            return [("import images into k3d", ["k3d", "image", "import", *refs, "--cluster", self.cluster])]
        if self.name == "kind":
            return [("load images into kind", ["kind", "load", "docker-image", *refs, "--name", self.cluster])]
        if self.name == "minikube":
            return [(f"load {ref} into minikube", ["minikube", "image", "load", ref, "-p", self.cluster])
                    for ref in refs]
        if self.name == "k3s":
            return [("save images to a tarball", ["docker", "save", "-o", K3S_TARBALL, *refs]),
                    ("import the tarball into k3s' containerd",
                     ["sudo", "-n", "k3s", "ctr", "images", "import", K3S_TARBALL])]
        return []  # docker-desktop: the cluster runs on Docker's own image store


def from_context(context: str) -> Distro | None:
    """The distribution a context name gives away (each tool names its contexts this way)."""
    if context.startswith("k3d-"):
        return Distro("k3d", context.removeprefix("k3d-"))
    if context.startswith("kind-"):
        return Distro("kind", context.removeprefix("kind-"))
    if context == "minikube":
        return Distro("minikube", "minikube")
    if context == "docker-desktop":
        return Distro("docker-desktop", "")
    if context == "default":  # /etc/rancher/k3s/k3s.yaml names its only context "default"
        return Distro("k3s", "")
    return None


def from_nodes(context: str, nodes: list[dict]) -> Distro | None:
    """Fallback for renamed contexts: the labels each distribution puts on its nodes."""
    for node in nodes:
        labels = node.get("metadata", {}).get("labels", {})
        provider = node.get("spec", {}).get("providerID", "")
        if "minikube.k8s.io/name" in labels:
            return Distro("minikube", labels["minikube.k8s.io/name"])
        if provider.startswith("kind://"):
            return Distro("kind", context.removeprefix("kind-"))
        if node.get("metadata", {}).get("name") == "docker-desktop":
            return Distro("docker-desktop", "")
        if labels.get("node.kubernetes.io/instance-type") == "k3s" or provider.startswith("k3s://"):
            name = node["metadata"].get("name", "")
            if name.startswith("k3d-") and name.endswith("-server-0"):
                return Distro("k3d", name.removeprefix("k3d-").removesuffix("-server-0"))
            return Distro("k3s", "")
    return None
