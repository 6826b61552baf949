"""deploy/manifests/: the plain-``kubectl apply`` rendering of the chart — a backend-only default set
plus opt-in folders. It must match the chart exactly (re-render with scripts/render-manifests.sh),
validate strictly, meet Pod Security "restricted", and — decided by tests/support/netpol_eval.py for each
distribution's documented clients — answer on the API port everywhere, and on the metrics port only
to the monitoring namespace and the app's own."""

from __future__ import annotations

import os
import subprocess

import pytest
from cluster_profiles import DEBUG_APP, DEBUG_DEFAULT, NODE, PORT_FORWARD, PROFILES, PROMETHEUS, PROMETHEUS_ELSEWHERE
from helm_render import ROOT, kubernetes_versions, load_docs, pod_specs, require_helm, template, validate_objects
from netpol_eval import Cluster, Source, reaches, resolve_named_service_port, route, service_backend
from pod_security import check_restricted

from visionctl import constants
from visionctl.ops.tunnel import TUNNEL_METRICS_PORT

MANIFESTS = ROOT / constants.MANIFESTS_DIR
SCRIPT = ROOT / "scripts" / "render-manifests.sh"
OPT_IN = ("ui", "ingress", "loadbalancer", "tunnel")
BACKEND_IMAGE = f"{constants.BACKEND_IMAGE}:{constants.IMAGE_TAG}"


def load(folder: str = "") -> list[dict]:
    """What ``kubectl apply -f deploy/manifests/<folder>`` applies (not recursive, lexical order)."""
    files = sorted((MANIFESTS / folder).glob("*.yaml"))
    assert files, f"no manifests in {MANIFESTS / folder}"
    return [doc for f in files for doc in load_docs(f.read_text())]


def every() -> list[dict]:
    return load() + [d for folder in OPT_IN for d in load(folder)]


def test_manifests_do_not_drift_from_chart(tmp_path):
    helm = require_helm()
    subprocess.run([str(SCRIPT), str(tmp_path)], check=True, capture_output=True, text=True, timeout=120,
                   env={**os.environ, "HELM": helm})
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.yaml")}
    committed = {p.relative_to(MANIFESTS): p.read_text() for p in MANIFESTS.rglob("*.yaml")}
    assert fresh.keys() == committed.keys()
    stale = [str(p) for p in fresh if fresh[p] != committed[p]]
    assert stale == [], "deploy/manifests is stale: run scripts/render-manifests.sh"


@pytest.mark.parametrize("version", kubernetes_versions())
def test_manifests_validate_strictly(version):
    assert validate_objects(every(), version) == []


def test_default_set_is_namespace_then_backend_only():
    docs = load()
    ns = docs[0]
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == constants.NAMESPACE
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs[1:] + [d for folder in OPT_IN for d in load(folder)]:
        assert doc["metadata"]["namespace"] == constants.NAMESPACE, doc["kind"]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "NetworkPolicy", "HorizontalPodAutoscaler"} <= kinds
    assert "Ingress" not in kinds  # the API works without any ingress controller
    assert {c["image"] for _, spec in pod_specs(docs) for c in spec["containers"]} == {BACKEND_IMAGE}
    assert all(s["spec"]["type"] == "ClusterIP" for s in docs if s["kind"] == "Service")
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"] == [f"{constants.RELEASE_NAME}-backend"]


def test_default_set_equals_a_backend_only_chart_install():
    """The backend objects do not depend on the opt-in parts: a helm install with default values
    (frontend, tunnel and LoadBalancer off) creates exactly what the default set holds, plus only
    the API Ingress."""
    chart = [d for d in load_docs(template(skip_tests=True).stdout) if d["kind"] != "Ingress"]
    for d in chart:
        d["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "kubectl"
        tmpl = d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
        if tmpl and "app.kubernetes.io/managed-by" in tmpl:
            tmpl["app.kubernetes.io/managed-by"] = "kubectl"
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(chart, key=key) == sorted(load()[1:], key=key)


def test_opt_in_folders_hold_what_their_names_say():
    assert {c["image"].rsplit(":", 1)[0] for _, s in pod_specs(load("ui")) for c in s["containers"]} \
        == {constants.FRONTEND_IMAGE}
    assert [d["kind"] for d in load("ingress")] == ["Ingress"]
    assert [(d["kind"], d["spec"]["type"]) for d in load("loadbalancer")] == [("Service", "LoadBalancer")]
    args = next(c for _, s in pod_specs(load("tunnel")) for c in s["containers"])["args"]
    # Straight to the API Service: works on any cluster, whatever its ingress controller.
    assert args[args.index("--url") + 1] == f"http://{constants.RELEASE_NAME}-backend:{constants.BACKEND_PORT}"


def test_plain_objects_no_helm_no_class_no_secrets():
    docs = every()
    assert not any(d["kind"] in ("Secret", "Pod") for d in docs)  # no secrets, no helm test hooks
    assert not any("helm.sh/hook" in d["metadata"].get("annotations", {}) for d in docs)
    assert not any(d["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "Helm" for d in docs)
    for ing in (d for d in docs if d["kind"] == "Ingress"):
        assert "ingressClassName" not in ing["spec"] and not ing["metadata"].get("annotations")


def test_every_pod_meets_restricted_profile():
    problems = [p for name, spec in pod_specs(every()) for p in check_restricted(name, spec)]
    assert problems == []


# ---- the evaluator's path, per distribution ------------------------------------------------------

def combinations():
    for profile in PROFILES:
        for extra in ((), ("ingress",), ("ingress", "ui"), ("loadbalancer",), ("tunnel",)):
            yield pytest.param(profile, extra, id=f"{profile.name}+{'+'.join(extra) or 'default'}")


@pytest.mark.parametrize("profile, extra", list(combinations()))
def test_every_client_of_every_cluster_reaches_the_api(profile, extra):
    """For each documented client of the distribution: follow the path its request takes (Ingress
    route → Service, LoadBalancer Service, cluster DNS Service, port-forward) to the backend pod
    and check that NetworkPolicy admits it on the API port."""
    docs = load() + [d for folder in extra for d in load(folder)]
    cluster = Cluster(docs, dict(profile.namespaces))
    ns = constants.NAMESPACE
    server, port = service_backend(cluster, ns, f"{constants.RELEASE_NAME}-backend", constants.BACKEND_PORT)
    assert port == constants.BACKEND_PORT
    paths = {"debug pod in default": server, "debug pod in vision-ai": server, PORT_FORWARD.name: server}
    if "ingress" in extra and profile.ingress_controller:
        hit = route(cluster, "/predict", controller_class=profile.ingress_class, is_default=True)
        assert hit, f"{profile.ingress_class} has no route for /predict"
        svc_port = resolve_named_service_port(cluster, hit[0], hit[1], hit[2])
        paths[profile.ingress_controller.name] = service_backend(cluster, hit[0], hit[1], svc_port)[0]
        metrics = route(cluster, "/metrics", controller_class=profile.ingress_class, is_default=True)
        assert metrics is None or not metrics[1].endswith("-backend"), "/metrics must stay internal"
    if "loadbalancer" in extra and profile.native:
        source, svc = profile.native
        paths[source.name] = service_backend(cluster, ns, svc, constants.BACKEND_PORT)[0]
    if "tunnel" in extra:
        tunnel = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-cloudflared"))
        labels = tunnel["spec"]["template"]["metadata"]["labels"]
        profile_clients = [Source("cloudflared", ns, labels)]
        paths["cloudflared"] = server
    else:
        profile_clients = []
    clients = {c.name: c for c in profile.clients + profile_clients}
    for name, target in paths.items():
        verdict = reaches(cluster, clients[name], target, port)
        assert verdict, f"{profile.name}: {name} cannot reach the API: {verdict.reason}"


def _container_port(cluster: Cluster, namespace: str, service: str, port) -> int:
    """The backend container port a request to ``service:port`` (number or name) ends on."""
    number = resolve_named_service_port(cluster, namespace, service, port)
    return service_backend(cluster, namespace, service, number)[1]


@pytest.mark.parametrize("profile, extra", list(combinations()))
def test_metrics_port_only_for_monitoring_and_the_own_namespace(profile, extra):
    """The metrics port, per distribution and opt-in set: Prometheus in `monitoring` and pods of the
    app's namespace reach it; no ingress controller, node address (NodePort/LoadBalancer), pod of
    another namespace, cloudflared or the UI does; and no Ingress rule, LoadBalancer or tunnel
    origin leads to it. Only port-forward (the kubelet, for operators) bypasses the policy."""
    docs = load() + [d for folder in extra for d in load(folder)]
    cluster = Cluster(docs, {**profile.namespaces, "monitoring": {}, "observability": {}})
    ns, metrics_port = constants.NAMESPACE, constants.METRICS_PORT
    server, port = service_backend(cluster, ns, f"{constants.RELEASE_NAME}-backend-metrics", metrics_port)
    assert port == metrics_port
    assert reaches(cluster, PROMETHEUS, server, port)
    assert reaches(cluster, DEBUG_APP, server, port)
    assert reaches(cluster, PORT_FORWARD, server, port)
    outsiders = [c for c in profile.clients if c not in (DEBUG_APP, PORT_FORWARD)] + [PROMETHEUS_ELSEWHERE]
    own = {d["metadata"]["name"]: Source(d["metadata"]["name"], ns, d["spec"]["template"]["metadata"]["labels"])
           for d in docs if d["kind"] == "Deployment" and not d["metadata"]["name"].endswith("-backend")}
    for client in outsiders + list(own.values()):  # cloudflared, the UI: in the namespace, still refused
        verdict = reaches(cluster, client, server, port)
        assert not verdict, f"{profile.name}: {client.name} reaches the metrics port: {verdict.reason}"
    # No published path ends on the metrics port: Ingress backends, non-ClusterIP Services, the tunnel.
    for ing in cluster.of_kind("Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                svc = path["backend"]["service"]
                if svc["name"].startswith(f"{constants.RELEASE_NAME}-backend"):
                    target = _container_port(cluster, ns, svc["name"], svc["port"].get("number") or svc["port"]["name"])
                    assert target == constants.BACKEND_PORT, (ing["metadata"]["name"], path["path"])
        hit = route(cluster, "/metrics", controller_class=profile.ingress_class or "none", is_default=True)
        assert hit is None or not hit[1].startswith(f"{constants.RELEASE_NAME}-backend")
    for svc in cluster.of_kind("Service"):
        carries = {_container_port(cluster, ns, svc["metadata"]["name"], p["port"]) for p in svc["spec"]["ports"]
                   if svc["spec"]["selector"].get("app.kubernetes.io/component") == "backend"}
        if svc["spec"]["type"] != "ClusterIP" or svc["metadata"]["name"] == f"{constants.RELEASE_NAME}-backend":
            assert metrics_port not in carries, svc["metadata"]["name"]
    if "tunnel" in extra:
        args = next(c for _, s in pod_specs(load("tunnel")) for c in s["containers"])["args"]
        origin = args[args.index("--url") + 1].removeprefix("http://")
        service, origin_port = origin.split(":")
        assert _container_port(cluster, ns, service, int(origin_port)) == constants.BACKEND_PORT


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_the_tunnels_metrics_port_is_for_operators_only(profile):
    """cloudflared's metrics port carries /quicktunnel (the public hostname) and its metrics: the same
    scrapers as the backend's, port-forward (how `visionctl tunnel` reads it) and the kubelet's
    liveness probe (node-local, always admitted); no other namespace and no node address."""
    docs = load() + load("tunnel")
    cluster = Cluster(docs, {**profile.namespaces, "monitoring": {}, "observability": {}})
    server, port = service_backend(cluster, constants.NAMESPACE, f"{constants.RELEASE_NAME}-cloudflared",
                                   TUNNEL_METRICS_PORT)
    for client in (PROMETHEUS, DEBUG_APP, PORT_FORWARD):
        assert reaches(cluster, client, server, port), client.name
    for client in [c for c in profile.clients if c not in (DEBUG_APP, PORT_FORWARD)] + [PROMETHEUS_ELSEWHERE,
                                                                                       DEBUG_DEFAULT, NODE]:
        verdict = reaches(cluster, client, server, port)
        assert not verdict, f"{profile.name}: {client.name} reaches cloudflared's metrics port: {verdict.reason}"


def test_a_metrics_rule_open_to_all_would_be_caught():
    """The check above can fail: the metrics rule without its `from` (what an empty peer list would
    render as) admits the node and every namespace, as it would on a cluster."""
    docs = load()
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == constants.METRICS_PORT)
    del rule["from"]
    cluster = Cluster(docs, {"kube-system": {}, "default": {}, "monitoring": {}})
    server, port = service_backend(cluster, "vision-ai", "vision-ai-backend-metrics", constants.METRICS_PORT)
    assert reaches(cluster, DEBUG_DEFAULT, server, port) and reaches(cluster, NODE, server, port)


def test_the_old_traefik_only_policy_would_fail_on_kind():
    """The simulation must be able to fail: the policy this project shipped before (Traefik in
    kube-system only) drops ingress-nginx and debug pods, as a kind ≥ 0.24 cluster would."""
    docs = load()
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    policy["spec"]["ingress"][0]["from"] = [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}}}]
    kind = next(p for p in PROFILES if p.name == "kind")
    cluster = Cluster(docs, dict(kind.namespaces))
    server, port = service_backend(cluster, "vision-ai", "vision-ai-backend", constants.BACKEND_PORT)
    refused = [c.name for c in kind.clients if not reaches(cluster, c, server, port)]
    assert refused == [kind.ingress_controller.name, kind.native[0].name, "debug pod in default",
                       "debug pod in vision-ai"]
