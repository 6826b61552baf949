"""A small NetworkPolicy and Ingress evaluator for rendered manifests — the cluster we cannot run.

No control plane runs on our machines, so "does this client reach the backend on this cluster?" is
decided here from the objects themselves, with the semantics of the Kubernetes API reference
(networking.k8s.io/v1):

* A pod is isolated for ingress (egress) when a NetworkPolicy of its namespace selects it and lists
  ``Ingress`` (``Egress``) in ``policyTypes`` (default: Ingress, plus Egress when ``egress`` is
  given). An isolated pod admits a connection if ANY rule of ANY selecting policy admits it; both
  the client's egress and the server's ingress must admit it.
* A rule without ``ports`` matches every port; a port entry matches protocol (default TCP) and a
  number, a number range (``endPort``) or a named container port of the server pod.
* A rule without ``from``/``to`` matches every source. A peer ``podSelector`` alone means pods of
  the policy's own namespace; ``namespaceSelector`` alone all pods of the matching namespaces; both
  together pods matching both; ``ipBlock`` an address range (minus ``except``).
* Traffic from a node address — host-network pods, NodePort/LoadBalancer traffic that kube-proxy
  SNATs — is matched only by ``ipBlock`` peers or a rule without ``from``: no selector matches it.
* ``kubectl port-forward`` enters the pod's own network namespace through the kubelet, so no
  NetworkPolicy applies; it only needs a container listening on the port.

Every distribution profile is evaluated as if its CNI enforced NetworkPolicy (k3s/k3d and kind ≥
0.24 do; minikube and Docker Desktop do with a policy-enforcing CNI): the worst case.

Ingress routing follows what Traefik and ingress-nginx share: an Ingress is served by a controller
when its ``ingressClassName`` names the controller's class, or is unset and the controller's class
is the cluster default; rules of one host are merged; ``Prefix`` matches whole path elements and the
longest match wins.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from helm_render import matches

NODE_IP = "172.18.0.2"
POD_CIDR = "10.42.0.0/16"


@dataclass(frozen=True)
class Source:
    """Where a connection comes from: a pod (``namespace`` + ``labels``), a node address
    (``node=True``: host-network pods and SNATed NodePort/LoadBalancer traffic) or a
    ``kubectl port-forward`` (``port_forward=True``)."""

    name: str
    namespace: str = ""
    labels: dict = field(default_factory=dict, hash=False)
    ip: str = "10.42.0.50"
    node: bool = False
    port_forward: bool = False


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass
class Cluster:
    """The objects of one cluster: our rendered manifests plus the distribution's namespaces."""

    objects: list[dict]
    namespaces: dict[str, dict] = field(default_factory=dict)  # name → labels

    def __post_init__(self):
        for obj in self.objects:
            if obj["kind"] == "Namespace":
                self.namespaces[obj["metadata"]["name"]] = dict(obj["metadata"].get("labels") or {})
        for name, labels in self.namespaces.items():
            labels.setdefault("kubernetes.io/metadata.name", name)  # set by the API server since 1.21

    def namespace_labels(self, name: str) -> dict:
        return self.namespaces.get(name, {"kubernetes.io/metadata.name": name})

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]


# -- selectors and ports --------------------------------------------------------------------------

def _in_block(ip: str, block: dict) -> bool:
    addr = ipaddress.ip_address(ip)
    if addr not in ipaddress.ip_network(block["cidr"], strict=False):
        return False
    return not any(addr in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])


def peer_matches(peer: dict, policy_ns: str, cluster: Cluster, ns: str, labels: dict, ip: str, node: bool) -> bool:
    if "ipBlock" in peer:
        return _in_block(ip, peer["ipBlock"])
    if node:
        return False  # selectors select pods; a node address is none of them
    if "namespaceSelector" in peer:
        if not matches(peer["namespaceSelector"], cluster.namespace_labels(ns)):
            return False
    elif ns != policy_ns:
        return False
    return matches(peer.get("podSelector") or {}, labels)


def port_matches(entries: list[dict] | None, port: int, protocol: str, container_ports: list[dict]) -> bool:
    if not entries:
        return True
    for entry in entries:
        if entry.get("protocol", "TCP") != protocol:
            continue
        want = entry.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            named = [p["containerPort"] for p in container_ports
                     if p.get("name") == want and p.get("protocol", "TCP") == protocol]
            if port in named:
                return True
        elif want <= port <= entry.get("endPort", want):
            return True
    return False


def _policy_types(policy: dict) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def selecting(cluster: Cluster, ns: str, labels: dict, direction: str) -> list[dict]:
    return [p for p in cluster.of_kind("NetworkPolicy")
            if p["metadata"].get("namespace", "default") == ns and direction in _policy_types(p)
            and matches(p["spec"].get("podSelector") or {}, labels)]


# -- the decision ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Server:
    """The pod being connected to: namespace, labels, IP and its containers' ports."""

    namespace: str
    labels: dict = field(hash=False)
    ports: list = field(hash=False)
    ip: str = "10.42.0.10"


def reaches(cluster: Cluster, source: Source, server: Server, port: int, protocol: str = "TCP") -> Verdict:
    """Whether ``source`` can open ``port`` on ``server`` (after any Service DNAT)."""
    if not any(p["containerPort"] == port and p.get("protocol", "TCP") == protocol for p in server.ports):
        return Verdict(False, f"no container listens on {port}/{protocol}")
    if source.port_forward:
        return Verdict(True, "port-forward enters the pod's network namespace; NetworkPolicy does not apply")
    if not source.node:
        egress = selecting(cluster, source.namespace, source.labels, "Egress")
        if egress and not any(
                port_matches(rule.get("ports"), port, protocol, server.ports)
                and (not rule.get("to") or any(peer_matches(peer, p["metadata"]["namespace"], cluster, server.namespace,
                                                            server.labels, server.ip, False) for peer in rule["to"]))
                for p in egress for rule in p["spec"].get("egress") or []):
            return Verdict(False, "the client's egress policies "
                                  f"({', '.join(p['metadata']['name'] for p in egress)}) drop it")
    ingress = selecting(cluster, server.namespace, server.labels, "Ingress")
    if not ingress:
        return Verdict(True, "no NetworkPolicy isolates the server")
    for policy in ingress:
        for rule in policy["spec"].get("ingress") or []:
            if not port_matches(rule.get("ports"), port, protocol, server.ports):
                continue
            peers = rule.get("from")
            if not peers or any(peer_matches(peer, policy["metadata"]["namespace"], cluster, source.namespace,
                                             source.labels, source.ip, source.node) for peer in peers):
                return Verdict(True, f"admitted by {policy['metadata']['name']}")
    return Verdict(False, f"no rule of {', '.join(p['metadata']['name'] for p in ingress)} admits it")


def service_backend(cluster: Cluster, namespace: str, service: str, port: int) -> tuple[Server, int]:
    """Resolve ``service:port`` to (the pod template it selects, the container port) — the path a
    request through a Service, NodePort, LoadBalancer or Ingress takes. Raises LookupError."""
    svc = next((s for s in cluster.of_kind("Service")
                if s["metadata"]["name"] == service and s["metadata"].get("namespace") == namespace), None)
    if svc is None:
        raise LookupError(f"no Service {namespace}/{service}")
    sport = next((p for p in svc["spec"]["ports"] if p["port"] == port or p.get("name") == port), None)
    if sport is None:
        raise LookupError(f"Service {service} has no port {port}")
    for dep in cluster.of_kind("Deployment"):
        tmpl = dep["spec"]["template"]
        if dep["metadata"].get("namespace") != namespace or not matches({"matchLabels": svc["spec"]["selector"]},
                                                                        tmpl["metadata"]["labels"]):
            continue
        ports = [p for c in tmpl["spec"]["containers"] for p in c.get("ports", [])]
        target = sport.get("targetPort", sport["port"])
        resolved = next((p["containerPort"] for p in ports if p.get("name") == target), None) \
            if isinstance(target, str) else target
        if resolved is None:
            raise LookupError(f"targetPort {target!r} of Service {service} names no container port")
        return Server(namespace, tmpl["metadata"]["labels"], ports), resolved
    raise LookupError(f"Service {service} selects no Deployment's pods")


# -- ingress routing ------------------------------------------------------------------------------

def _prefix_match(prefix: str, path: str) -> bool:
    want = [p for p in prefix.split("/") if p]
    have = [p for p in path.split("/") if p]
    return have[:len(want)] == want


def route(cluster: Cluster, path: str, *, controller_class: str, is_default: bool, host: str = "localhost"):
    """(namespace, Service name, port) that a controller of ``controller_class`` sends ``path`` to,
    or None (its 404). Exact paths beat prefixes; the longest prefix wins."""
    best, best_len = None, -1
    for ing in cluster.of_kind("Ingress"):
        cls = ing["spec"].get("ingressClassName")
        if not (cls == controller_class or (cls is None and is_default)):
            continue
        for rule in ing["spec"].get("rules", []):
            if rule.get("host") not in (None, host):
                continue
            for p in rule.get("http", {}).get("paths", []):
                kind = p.get("pathType")
                if kind == "Exact":
                    hit, length = p["path"] == path, 10_000
                elif kind == "Prefix":
                    hit, length = _prefix_match(p["path"], path), len(p["path"].rstrip("/"))
                else:
                    raise ValueError(f"pathType {kind} routes differently on Traefik and ingress-nginx")
                if hit and length > best_len:
                    svc = p["backend"]["service"]
                    best, best_len = (ing["metadata"]["namespace"], svc["name"],
                                      svc["port"].get("number") or svc["port"].get("name")), length
    return best


def resolve_named_service_port(cluster: Cluster, namespace: str, service: str, port) -> int:
    """An Ingress backend may name the Service port; return its number."""
    if isinstance(port, int):
        return port
    svc = next(s for s in cluster.of_kind("Service") if s["metadata"]["name"] == service
               and s["metadata"]["namespace"] == namespace)
    return next(p["port"] for p in svc["spec"]["ports"] if p.get("name") == port)
