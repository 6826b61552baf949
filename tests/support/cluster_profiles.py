"""The clients a user's local cluster puts in front of our backend, per distribution, as documented
by each project (labels and namespaces are what their default installs create).

* k3s / k3d: Traefik in ``kube-system`` (labels of the bundled Traefik chart), default IngressClass
  ``traefik``; ServiceLB (klipper-lb) runs ``svclb-*`` pods in ``kube-system`` that DNAT to the
  Service and masquerade, so the backend sees the svclb pod. k3s enforces NetworkPolicy (its
  embedded kube-router controller). Images: ``k3s ctr images import`` / ``k3d image import -c``.
* kind: no ingress controller by default; its documented ingress-nginx manifest runs the
  controller in ``ingress-nginx`` (hostPort 80, serves Ingresses without a class). Since v0.24
  kindnetd enforces NetworkPolicy. NodePort traffic reaches the pod SNATed from the node address.
* minikube: the ``ingress`` addon is ingress-nginx in ``ingress-nginx``, IngressClass ``nginx``
  (the default class); ``minikube service --url`` is a NodePort, i.e. a node source.
* Docker Desktop: no ingress controller; a LoadBalancer Service is published on localhost through
  the VM's port forwarder, i.e. a node source.
Every cluster: a debug pod in ``default`` and in the app namespace, and ``kubectl port-forward``.
The monitoring stack is the user's own install, as kube-prometheus-stack creates it: Prometheus pods
in the namespace ``monitoring`` (the chart's default scraper namespace); a Prometheus anywhere else
is an ordinary pod to the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netpol_eval import NODE_IP, Source

TRAEFIK = Source("Traefik (kube-system)", "kube-system",
                 {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-kube-system"},
                 ip="10.42.0.8")
INGRESS_NGINX = Source("ingress-nginx controller", "ingress-nginx",
                       {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/instance": "ingress-nginx",
                        "app.kubernetes.io/component": "controller"}, ip="10.244.0.7")
SVCLB = Source("ServiceLB svclb pod (kube-system)", "kube-system",
               {"app": "svclb-vision-ai-backend-lb-3a1f5c2e",
                "svccontroller.k3s.cattle.io/svcname": "vision-ai-backend-lb",
                "svccontroller.k3s.cattle.io/svcnamespace": "vision-ai"}, ip="10.42.0.9")
NODE = Source("node address (NodePort / LoadBalancer, SNAT)", node=True, ip=NODE_IP)
DEBUG_DEFAULT = Source("debug pod in default", "default", {"run": "curl"}, ip="10.42.0.60")
DEBUG_APP = Source("debug pod in vision-ai", "vision-ai", {"run": "curl"}, ip="10.42.0.61")
PORT_FORWARD = Source("kubectl port-forward", port_forward=True)
PROMETHEUS = Source("Prometheus (monitoring)", "monitoring",
                    {"app.kubernetes.io/name": "prometheus",
                     "operator.prometheus.io/name": "kube-prometheus-stack-prometheus"}, ip="10.42.0.70")
PROMETHEUS_ELSEWHERE = Source("Prometheus in an unlabelled namespace", "observability",
                              dict(PROMETHEUS.labels), ip="10.42.0.71")


@dataclass(frozen=True)
class Profile:
    name: str
    ingress_controller: Source | None = None
    ingress_class: str | None = None  # the default IngressClass's name (serves classless Ingresses)
    # (client, Service it enters through) for the native URL without an ingress, if the cluster has one
    native: tuple[Source, str] | None = None
    namespaces: dict = field(default_factory=dict, hash=False)

    @property
    def clients(self) -> list[Source]:
        extra = [c for c in (self.ingress_controller, self.native[0] if self.native else None) if c]
        return [*extra, DEBUG_DEFAULT, DEBUG_APP, PORT_FORWARD]


_SYSTEM = {"kube-system": {}, "default": {}}
PROFILES = [
    Profile("k3s", TRAEFIK, "traefik", (SVCLB, "vision-ai-backend-lb"), _SYSTEM),
    Profile("k3d", TRAEFIK, "traefik", (SVCLB, "vision-ai-backend-lb"), _SYSTEM),
    Profile("kind", INGRESS_NGINX, "nginx", (NODE, "vision-ai-backend-lb"), {**_SYSTEM, "ingress-nginx": {}}),
    Profile("minikube", INGRESS_NGINX, "nginx", (NODE, "vision-ai-backend-lb"), {**_SYSTEM, "ingress-nginx": {}}),
    Profile("docker-desktop", None, None, (NODE, "vision-ai-backend-lb"), _SYSTEM),
]
