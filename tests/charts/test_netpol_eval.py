"""Unit tests of the NetworkPolicy / Ingress evaluator (tests/support/netpol_eval.py) on hand-written
objects, one API rule at a time, so the distribution simulation in test_manifests.py can be trusted."""

from __future__ import annotations

import pytest
from netpol_eval import Cluster, Server, Source, reaches, route, service_backend

APP = {"app": "api"}
SERVER = Server("app", APP, [{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
SAME_NS = Source("same namespace", "app", {"role": "client"})
OTHER_NS = Source("other namespace", "tools", {"role": "client"})
TRAEFIK = Source("traefik", "kube-system", {"app.kubernetes.io/name": "traefik"})
NODE = Source("node", node=True, ip="172.18.0.2")
PF = Source("port-forward", port_forward=True)


def policy(name="p", ns="app", selector=None, ingress=None, egress=None, types=None) -> dict:
    spec = {"podSelector": selector if selector is not None else {"matchLabels": APP}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def cluster(*objects) -> Cluster:
    return Cluster(list(objects), {"app": {}, "tools": {"team": "qa"}, "kube-system": {}})


def test_no_policy_admits_everything_but_a_closed_port():
    c = cluster()
    assert all(reaches(c, s, SERVER, 8080) for s in (SAME_NS, OTHER_NS, NODE, PF))
    assert not reaches(c, SAME_NS, SERVER, 9090)  # nothing listens there
    assert not reaches(c, PF, SERVER, 9090)


def test_empty_ingress_isolates_and_denies_all_but_port_forward():
    c = cluster(policy(ingress=[], types=["Ingress"]))
    assert not any(reaches(c, s, SERVER, 8080) for s in (SAME_NS, OTHER_NS, NODE))
    assert reaches(c, PF, SERVER, 8080)


def test_policy_types_default_to_ingress_plus_egress_when_given():
    # Without policyTypes every policy affects ingress — even one with only an egress section.
    assert not reaches(cluster(policy(egress=[])), OTHER_NS, SERVER, 8080)
    assert reaches(cluster(policy(egress=[], types=["Egress"])), OTHER_NS, SERVER, 8080)


def test_pod_selector_peer_is_same_namespace_only():
    c = cluster(policy(ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]))
    assert reaches(c, SAME_NS, SERVER, 8080)
    assert not reaches(c, OTHER_NS, SERVER, 8080)  # same labels, other namespace


def test_namespace_selector_alone_and_with_pod_selector():
    by_ns = cluster(policy(ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "qa"}}}]}]))
    assert reaches(by_ns, OTHER_NS, SERVER, 8080) and not reaches(by_ns, SAME_NS, SERVER, 8080)
    both = cluster(policy(ingress=[{"from": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}}}]}]))
    assert reaches(both, TRAEFIK, SERVER, 8080)
    assert not reaches(both, Source("nginx", "kube-system", {"app.kubernetes.io/name": "ingress-nginx"}), SERVER, 8080)
    assert not reaches(both, Source("traefik elsewhere", "tools", {"app.kubernetes.io/name": "traefik"}), SERVER, 8080)
    everyone = cluster(policy(ingress=[{"from": [{"namespaceSelector": {}}]}]))
    assert reaches(everyone, OTHER_NS, SERVER, 8080) and reaches(everyone, TRAEFIK, SERVER, 8080)


def test_pod_selector_expressions_in_peers():
    """NotIn admits pods without the label too (the chart's "own namespace minus cloudflared")."""
    c = cluster(policy(ingress=[{"from": [{"podSelector": {"matchExpressions": [
        {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["cloudflared"]}]}}]}]))
    assert reaches(c, SAME_NS, SERVER, 8080)  # no component label at all
    assert reaches(c, Source("ui", "app", {"app.kubernetes.io/component": "frontend"}), SERVER, 8080)
    assert not reaches(c, Source("tunnel", "app", {"app.kubernetes.io/component": "cloudflared"}), SERVER, 8080)
    assert not reaches(c, OTHER_NS, SERVER, 8080)  # a podSelector alone stays in the policy's namespace


def test_node_sources_match_only_ip_blocks_or_no_from():
    selectors = cluster(policy(ingress=[{"from": [{"namespaceSelector": {}}]}]))
    assert not reaches(selectors, NODE, SERVER, 8080)  # "all pods in all namespaces" is not a node
    open_port = cluster(policy(ingress=[{"ports": [{"port": 8080}]}]))
    assert reaches(open_port, NODE, SERVER, 8080)
    block = cluster(policy(ingress=[{"from": [{"ipBlock": {"cidr": "172.18.0.0/16", "except": ["172.18.0.2/32"]}}]}]))
    assert not reaches(block, NODE, SERVER, 8080)
    assert reaches(block, Source("other node", node=True, ip="172.18.0.3"), SERVER, 8080)


def test_ports_numbers_ranges_names_and_protocols():
    def only(ports):
        return cluster(policy(ingress=[{"ports": ports}]))

    assert reaches(only([{"port": 8080}]), OTHER_NS, SERVER, 8080)
    assert not reaches(only([{"port": 8081}]), OTHER_NS, SERVER, 8080)
    assert reaches(only([{"port": 8000, "endPort": 8100}]), OTHER_NS, SERVER, 8080)
    assert reaches(only([{"port": "http"}]), OTHER_NS, SERVER, 8080)
    assert not reaches(only([{"port": "metrics"}]), OTHER_NS, SERVER, 8080)
    assert not reaches(only([{"port": 8080, "protocol": "UDP"}]), OTHER_NS, SERVER, 8080)
    assert reaches(only([{"protocol": "TCP"}]), OTHER_NS, SERVER, 8080)  # no port = every port


def test_any_rule_of_any_policy_admits():
    c = cluster(policy("a", ingress=[{"from": [{"podSelector": {"matchLabels": {"x": "y"}}}]}]),
                policy("b", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "qa"}}}]}]))
    assert reaches(c, OTHER_NS, SERVER, 8080)
    assert not reaches(c, TRAEFIK, SERVER, 8080)


def test_policies_of_other_namespaces_or_pods_do_not_apply():
    c = cluster(policy(ns="tools", ingress=[]), policy(selector={"matchLabels": {"app": "other"}}, ingress=[]))
    assert reaches(c, OTHER_NS, SERVER, 8080)


def test_client_egress_must_admit_too():
    deny = policy("deny-egress", ns="tools", selector={}, egress=[], types=["Egress"])
    assert not reaches(cluster(deny), OTHER_NS, SERVER, 8080)
    to_api = policy("to-api", ns="tools", selector={}, types=["Egress"], egress=[{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app"}},
                "podSelector": {"matchLabels": APP}}], "ports": [{"port": 8080}]}])
    assert reaches(cluster(to_api), OTHER_NS, SERVER, 8080)
    assert reaches(cluster(deny), NODE, SERVER, 8080)  # node traffic has no pod egress policy


def deployment(labels, ports, ns="app"):
    return {"kind": "Deployment", "metadata": {"name": "api", "namespace": ns},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": [{"ports": ports}]}}}}


def service(name, selector, target, ns="app", port=80):
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": target}]}}


def test_service_resolves_named_target_ports_and_fails_loudly():
    c = cluster(deployment(APP, [{"name": "http", "containerPort": 8080}]), service("api", APP, "http"),
                service("typo", APP, "htp"), service("orphan", {"app": "none"}, 8080))
    server, port = service_backend(c, "app", "api", 80)
    assert port == 8080 and server.labels == APP
    with pytest.raises(LookupError, match="names no container port"):
        service_backend(c, "app", "typo", 80)
    with pytest.raises(LookupError, match="selects no"):
        service_backend(c, "app", "orphan", 80)
    with pytest.raises(LookupError, match="no Service"):
        service_backend(c, "app", "missing", 80)


def ingress(name, paths, cls=None, host=None):
    rule = {"http": {"paths": [{"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}
                               for p, t, s in paths]}}
    if host:
        rule["host"] = host
    spec = {"rules": [rule]}
    if cls:
        spec["ingressClassName"] = cls
    return {"kind": "Ingress", "metadata": {"name": name, "namespace": "app"}, "spec": spec}


def test_routing_longest_prefix_by_path_element_across_ingresses():
    c = cluster(ingress("api", [("/predict", "Prefix", "api"), ("/v1", "Prefix", "api")]),
                ingress("ui", [("/", "Prefix", "ui")]))
    to = lambda path: (route(c, path, controller_class="nginx", is_default=True) or (None, None))[1]  # noqa: E731
    assert to("/predict") == to("/v1/models/mnist/predict") == to("/v1") == "api"
    assert to("/v1x") == to("/metrics") == to("/") == "ui"  # "/v1" does not prefix "/v1x"


def test_routing_respects_classes_and_hosts():
    pinned = cluster(ingress("api", [("/predict", "Prefix", "api")], cls="traefik"))
    assert route(pinned, "/predict", controller_class="traefik", is_default=False) == ("app", "api", 80)
    assert route(pinned, "/predict", controller_class="nginx", is_default=True) is None  # nginx's 404
    classless = cluster(ingress("api", [("/predict", "Prefix", "api")]))
    assert route(classless, "/predict", controller_class="nginx", is_default=True) == ("app", "api", 80)
    assert route(classless, "/predict", controller_class="nginx", is_default=False) is None
    hosted = cluster(ingress("api", [("/predict", "Prefix", "api")], host="vision.example.com"))
    assert route(hosted, "/predict", controller_class="x", is_default=True) is None
    assert route(hosted, "/predict", controller_class="x", is_default=True, host="vision.example.com") \
        == ("app", "api", 80)


def test_controller_specific_path_types_are_refused():
    c = cluster(ingress("api", [("/predict(/|$)(.*)", "ImplementationSpecific", "api")]))
    with pytest.raises(ValueError, match="routes differently"):
        route(c, "/predict", controller_class="nginx", is_default=True)
