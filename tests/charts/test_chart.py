"""The Helm chart, rendered by the real ``helm`` for the defaults and every ``ci/*-values.yaml``.

No control plane can run here, so the cluster's admission is replaced by what it would check:
``helm lint --strict``, strict OpenAPI schemas of Kubernetes 1.31 and the newest release, the
"restricted" Pod Security Standard, and consistency between objects (Service → pods, NetworkPolicy
→ pods, Ingress → Services, probes → routes the backend really has).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from cluster_profiles import (
    DEBUG_APP,
    DEBUG_DEFAULT,
    INGRESS_NGINX,
    NODE,
    PORT_FORWARD,
    PROFILES,
    PROMETHEUS,
    PROMETHEUS_ELSEWHERE,
    TRAEFIK,
)
from helm_render import (
    CHART,
    CI_VALUES,
    ROOT,
    SCENARIOS,
    find,
    helm,
    kubernetes_versions,
    load_docs,
    matches,
    pod_labels,
    pod_specs,
    render,
    template,
    validate_objects,
)
from netpol_eval import Cluster, Source, reaches, route, service_backend
from pod_security import check_restricted

import visionctl
from visionctl import constants

SCENARIO_NAMES = list(SCENARIOS)
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())


def component(docs, kind, name):
    objs = find(docs, kind, component=name)
    assert len(objs) == 1, f"expected one {kind} for {name}, got {[o['metadata']['name'] for o in objs]}"
    return objs[0]


def container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(c) -> dict:
    return {e["name"]: e for e in c.get("env", [])}


# ---- static agreement with the Python constants ------------------------------------------------

def test_chart_agrees_with_constants():
    assert CHART_META["appVersion"] == visionctl.__version__ == constants.IMAGE_TAG
    assert VALUES["backend"]["image"]["repository"] == constants.BACKEND_IMAGE
    assert VALUES["frontend"]["image"]["repository"] == constants.FRONTEND_IMAGE
    # The project's tags are not repeated in values.yaml: empty means the chart's appVersion.
    assert VALUES["backend"]["image"]["tag"] == VALUES["frontend"]["image"]["tag"] == ""
    assert VALUES["backend"]["containerPort"] == VALUES["backend"]["service"]["port"] == constants.BACKEND_PORT
    assert VALUES["backend"]["metricsPort"] == constants.METRICS_PORT
    assert VALUES["frontend"]["containerPort"] == VALUES["frontend"]["service"]["port"] == constants.FRONTEND_PORT
    for ctx in (VALUES["podSecurityContext"], VALUES["containerSecurityContext"]):
        assert ctx["runAsUser"] == ctx["runAsGroup"] == constants.RUN_AS_UID
    assert VALUES["backend"]["models"] == list(constants.MODEL_NAMES)
    assert Path(constants.CHART_DIR) == CHART.relative_to(ROOT)
    for image in (VALUES["backend"]["image"], VALUES["frontend"]["image"], VALUES["cloudflared"]["image"]):
        assert image["tag"] != "latest" and image["pullPolicy"] == "IfNotPresent"
    assert VALUES["cloudflared"]["image"]["tag"]  # a third-party image: pinned explicitly


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("set_values, backend, frontend", [
    ((), f"{constants.BACKEND_IMAGE}:{constants.IMAGE_TAG}", f"{constants.FRONTEND_IMAGE}:{constants.IMAGE_TAG}"),
    (("backend.image.tag=0.2.0-rc1",), f"{constants.BACKEND_IMAGE}:0.2.0-rc1",
     f"{constants.FRONTEND_IMAGE}:{constants.IMAGE_TAG}"),
    (("imageRegistry=ghcr.io/me", f"frontend.image.digest={DIGEST}"),
     f"ghcr.io/me/{constants.BACKEND_IMAGE}:{constants.IMAGE_TAG}", f"ghcr.io/me/{constants.FRONTEND_IMAGE}@{DIGEST}"),
])
def test_image_references_default_to_the_app_version(set_values, backend, frontend):
    """One helper builds every image reference: registry prefix, then digest or tag (appVersion when empty)."""
    docs = load_docs(template(set_values=["frontend.enabled=true", *set_values]).stdout)
    assert container(component(docs, "Deployment", "backend"))["image"] == backend
    assert container(component(docs, "Deployment", "frontend"))["image"] == frontend
    (test_pod,) = find(docs, "Pod")
    assert test_pod["spec"]["containers"][0]["image"] == backend


def test_dockerfiles_agree_with_constants():
    for name, port in ((constants.DOCKERFILE_BACKEND, constants.BACKEND_PORT),
                       (constants.DOCKERFILE_FRONTEND, constants.FRONTEND_PORT)):
        text = (ROOT / name).read_text()
        assert "ARG BASE_IMAGE=python:3.11-slim" in text
        assert f"USER {constants.RUN_AS_UID}:{constants.RUN_AS_UID}" in text
        assert f"EXPOSE {port}" in text


def test_helm_test_sample_is_the_repository_sample():
    sample = CHART / VALUES["tests"]["sampleFile"]
    assert sample.read_bytes() == (ROOT / "samples" / "mnist" / "7-7.png").read_bytes()
    assert VALUES["tests"]["expectedLabel"] == "7"


# ---- helm lint / template / schema -------------------------------------------------------------

@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "default")
def test_helm_lint_strict(values):
    args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_renderings_validate_strictly(scenario):
    docs = render(scenario)
    for version in kubernetes_versions():
        assert validate_objects(docs, version) == [], f"{scenario} against Kubernetes {version}"


def test_ci_scenarios_cover_the_issue():
    assert {"tunnel-quick", "tunnel-token", "hpa-off", "ingress-off", "api-keys", "ui"} <= set(SCENARIOS)


def test_default_install_needs_only_the_backend_image():
    """A plain `helm install --wait` after building only the backend image must finish: nothing
    may wait on an image that was not built, nor on an external IP kind/minikube never assign."""
    docs = render("default")
    images = {c["image"] for _, spec in pod_specs(docs) for c in spec["containers"]}
    assert images == {f"{constants.BACKEND_IMAGE}:{constants.IMAGE_TAG}"}
    assert all(s["spec"]["type"] == "ClusterIP" for s in find(docs, "Service"))


def test_load_balancer_service_is_opt_in_and_not_scraped_twice():
    docs = render("ui")
    (lb,) = find(docs, "Service", name="vision-ai-backend-lb")
    assert lb["spec"]["type"] == "LoadBalancer" and lb["spec"]["ports"][0]["port"] == constants.BACKEND_PORT
    assert [p["targetPort"] for p in lb["spec"]["ports"]] == ["http"]  # never the metrics port
    cluster = Cluster(docs)
    server, port = service_backend(cluster, "vision-ai", "vision-ai-backend-lb", constants.BACKEND_PORT)
    assert server.labels == pod_labels(component(docs, "Deployment", "backend")) and port == constants.BACKEND_PORT
    monitor = load_docs(template(set_values=["backend.service.loadBalancer.enabled=true",
                                             "metrics.serviceMonitor.enabled=true"]).stdout)
    (service_monitor,) = find(monitor, "ServiceMonitor")
    selector = service_monitor["spec"]["selector"]
    assert [s["metadata"]["name"] for s in find(monitor, "Service") if matches(selector, s["metadata"]["labels"])] \
        == ["vision-ai-backend-metrics"]


@pytest.mark.parametrize("args, message", [
    (["backend.image.tag=latest"], "at '/backend/image/tag'"),
    (["frontend.image.tag=latest"], "at '/frontend/image/tag'"),
    (["ingress.apiPaths[0]=/metrics"], "at '/ingress/apiPaths/0'"),
    (["backend.replicas=3"], "additional properties 'replicas' not allowed"),  # a typo of replicaCount
    (["frontend.service.extra=1"], "additional properties 'extra' not allowed"),
    (["apiKeys.enabled=true"], "apiKeys.enabled=true needs apiKeys.existingSecret"),
    (["apiKeys.enabled=true", "apiKeys.keys[0]=short"], "at '/apiKeys/keys/0'"),
    (["cloudflared.enabled=true", "cloudflared.mode=token"], "cloudflared.mode=token needs cloudflared.existingSecret"),
    (["cloudflared.mode=magic"], "at '/cloudflared/mode'"),
    (["backend.shutdownTimeoutSeconds=40"], "must be < terminationGracePeriodSeconds"),
    (["ingress.tls=true"], "ingress.tls needs ingress.hostname"),
    (["ingress.tls=true", "ingress.hostname=vision.example.com"], "ingress.tls needs ingress.tlsSecretName"),
    (["backend.image.digest=sha256:xyz"], "at '/backend/image/digest'"),
    (["backend.logLevel=LOUD"], "at '/backend/logLevel'"),
    (["backend.threads=0"], "at '/backend/threads'"),
    (["backend.startupProbe.successThreshold=2"], "at '/backend/startupProbe/successThreshold'"),
    (["backend.autoscaling.targetCPUUtilizationPercentage=101"],
     "at '/backend/autoscaling/targetCPUUtilizationPercentage'"),
    (["backend.rateLimit=lots"], "at '/backend/rateLimit'"),
    (["frontend.service.annotations.sticky=1"], "at '/frontend/service/annotations/sticky'"),
    (["imagePullSecrets[0].secret=x"], "at '/imagePullSecrets/0'"),
    (["metrics.serviceMonitor.interval=often"], "at '/metrics/serviceMonitor/interval'"),
    (["metrics.podMonitor.scrapeTimeout=soon"], "at '/metrics/podMonitor/scrapeTimeout'"),
    (["metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"], "not both"),
    (["backend.metricsPort=8080"], "backend.metricsPort must differ from backend.containerPort"),
    (["backend.metricsPort=80"], "at '/backend/metricsPort'"),
    (["networkPolicy.metricsClients[0]=monitoring"], "at '/networkPolicy/metricsClients/0'"),
])
def test_invalid_values_are_refused(args, message):
    result = template(set_values=args, check=False)
    assert result.returncode != 0, f"{args} rendered:\n{result.stdout[:500]}"
    assert message in result.stderr


def test_open_maps_and_kubernetes_objects_accept_any_key(tmp_path):
    """The schema is closed where values.yaml lists every key, and open where Kubernetes or the
    user owns the keys (labels, annotations, security contexts, resources, rollout strategy)."""
    values = tmp_path / "open-values.yaml"
    values.write_text(yaml.safe_dump({
        "metrics": {"grafanaDashboard": {"enabled": True, "labels": {"team": "ml"}}},
        "frontend": {"enabled": True, "service": {"annotations": {"example.com/owner": "ml"}}},
        "podSecurityContext": {"supplementalGroups": [10001]},
        "containerSecurityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
        "backend": {"resources": {"requests": {"ephemeral-storage": "1Gi"}}, "drainDelaySeconds": 0.5,
                    "workers": "auto", "updateStrategy": {"rollingUpdate": {"maxSurge": "25%"}}},
    }))
    result = template([values], check=False)
    assert result.returncode == 0, result.stderr
    docs = load_docs(result.stdout)
    (dashboard,) = find(docs, "ConfigMap", name="vision-ai-dashboard")
    assert {"team": "ml", "grafana_dashboard": "1"}.items() <= dashboard["metadata"]["labels"].items()
    backend = component(docs, "Deployment", "backend")
    assert container(backend)["resources"]["requests"]["ephemeral-storage"] == "1Gi"
    assert env_of(container(backend))["VISION_DRAIN_DELAY"]["value"] == "0.5"


# ---- Pod Security "restricted" -----------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_every_pod_meets_restricted_profile(scenario):
    specs = pod_specs(render(scenario))
    assert len(specs) >= 2  # backend and the helm test pod at least
    problems = [p for name, spec in specs for p in check_restricted(name, spec)]
    assert problems == []


def test_restricted_check_catches_violations():
    """The checker itself must reject a pod that breaks the profile (else the test above is void)."""
    _, spec = pod_specs(render("default"))[0]
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    spec["hostNetwork"] = True
    spec["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    problems = check_restricted("x", spec)
    assert problems == ["x: hostNetwork set", "x: volume h uses {'hostPath'}",
                        f"x: container {spec['containers'][0]['name']}: allowPrivilegeEscalation not false"]


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_tmp_is_the_only_writable_path(scenario):
    """Read-only root filesystems need /tmp as an emptyDir (Streamlit's HOME, Python's tempfile)."""
    for name, spec in pod_specs(render(scenario)):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            writable = [m["mountPath"] for m in c.get("volumeMounts", [])
                        if "emptyDir" in volumes[m["name"]] and not m.get("readOnly")]
            if not name.startswith("Pod/"):
                assert writable == ["/tmp"], name


# ---- probes, ports, services --------------------------------------------------------------------

def backend_routes() -> set[str]:
    """GET routes of the real Flask app (models are not loaded by create_app)."""
    pytest.importorskip("flask")
    from backend.config import Config
    from backend.web.app import create_app

    app = create_app(Config(model_dir=ROOT / "models"))
    # Flask's implicit /static/<path> is not part of the API (the app has no static folder).
    return {rule.rule for rule in app.url_map.iter_rules()
            if "GET" in (rule.methods or ()) and rule.endpoint != "static"}


def test_backend_probes_hit_real_routes():
    routes = backend_routes()
    backend = component(render("default"), "Deployment", "backend")
    c = container(backend)
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {k: c[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == probes["startupProbe"]["path"] == "/readyz"
    for probe in probes.values():  # cheap, unauthenticated, on the API port the kubelet reaches
        assert probe["path"] in routes
        assert port_names[probe["port"]] == constants.BACKEND_PORT
    assert env_of(c)["VISION_PORT"]["value"] == str(constants.BACKEND_PORT)
    # Two planes: /metrics is no API route; the named `metrics` port serves it (VISION_METRICS_PORT).
    assert "/metrics" not in routes
    assert port_names == {"http": constants.BACKEND_PORT, "metrics": constants.METRICS_PORT}
    assert env_of(c)["VISION_METRICS_PORT"]["value"] == str(constants.METRICS_PORT)
    annotations = backend["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == \
        (str(constants.METRICS_PORT), "/metrics")


def test_frontend_probes_streamlit_health():
    c = container(component(render("ui"), "Deployment", "frontend"))
    for key in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[key]["httpGet"] == {"path": "/_stcore/health", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": constants.FRONTEND_PORT, "protocol": "TCP"}]


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_services_select_exactly_their_pods(scenario):
    docs = render(scenario)
    workloads = find(docs, "Deployment")
    for svc in find(docs, "Service"):
        selected = [d for d in workloads if matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(d))]
        assert len(selected) == 1, f"Service {svc['metadata']['name']} selects {len(selected)} Deployments"
        ports = {p["name"]: p["containerPort"] for c in selected[0]["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{svc['metadata']['name']}: targetPort {port['targetPort']}"
    for deploy in workloads:  # selectors must match their own template (the API server insists)
        assert matches(deploy["spec"]["selector"], pod_labels(deploy))


def test_frontend_reaches_backend_by_service_dns_name():
    docs = render("ui")
    svc = component(docs, "Service", "backend")
    url = env_of(container(component(docs, "Deployment", "frontend")))["VISION_API_URL"]["value"]
    assert url == f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
    assert svc["metadata"]["name"] == "vision-ai-backend"  # what `visionctl` and the docs use


# ---- ingress --------------------------------------------------------------------------------------

@pytest.mark.parametrize("controller", ["traefik", "nginx"])
@pytest.mark.parametrize("scenario", ["default", "ui"])
def test_ingress_routes_ui_and_api_but_not_metrics(scenario, controller):
    """Routed the way Traefik and ingress-nginx both route (tests/support/netpol_eval.py): no class pinned,
    so the cluster's default controller serves it; longest Prefix wins; /metrics never reaches
    the backend; "/" is the UI only when it is installed."""
    docs = render(scenario)
    cluster = Cluster(docs)
    assert all("ingressClassName" not in i["spec"] for i in find(docs, "Ingress"))
    assert all(not i["metadata"].get("annotations") for i in find(docs, "Ingress"))  # no controller dialect
    assert route(cluster, "/predict", controller_class=controller, is_default=False) is None  # only the default class

    def to(path):
        hit = route(cluster, path, controller_class=controller, is_default=True)
        return hit and cluster_component(docs, hit[1])

    real = backend_routes() | {"/predict", "/v1/models/<name>/predict"}
    # "/" is the UI's on the ingress (the backend's JSON index answers it on the Service itself).
    for path in real - {"/metrics", "/"}:
        assert to(path.replace("<name>", "mnist").replace("<asset>", "swagger-ui.css")) == "backend", path
    ui = "frontend" if scenario == "ui" else None
    for path in ("/metrics", "/metrics/", "/", "/_stcore/health", "/v1x", "/predictx"):
        assert to(path) == ui, path
    # Streamlit's internal metrics never reach the UI (the backend answers them with a JSON 404).
    assert to("/_stcore/metrics") == ("backend" if scenario == "ui" else None)
    assert "/_stcore/metrics" not in backend_routes()
    for ing in find(docs, "Ingress"):  # every backend reference names a real Service port
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]
                (target,) = find(docs, "Service", name=svc["name"])
                assert svc["port"]["name"] in {q["name"] for q in target["spec"]["ports"]}


def cluster_component(docs, service_name):
    return find(docs, "Service", name=service_name)[0]["metadata"]["labels"]["app.kubernetes.io/component"]


def test_ingress_class_can_be_pinned():
    docs = load_docs(template(set_values=["ingress.className=traefik", "frontend.enabled=true"]).stdout)
    assert [i["spec"]["ingressClassName"] for i in find(docs, "Ingress")] == ["traefik", "traefik"]


def test_ingress_off_and_tunnel_target_frontend():
    docs = render("ingress-off")
    assert find(docs, "Ingress") == []
    args = container(component(docs, "Deployment", "cloudflared"))["args"]
    assert args[args.index("--url") + 1] == "http://vision-ai-frontend:8501"


# ---- autoscaling, disruption, rollout -------------------------------------------------------------

def test_hpa_owns_backend_replicas_by_default():
    docs = render("default")
    backend = component(docs, "Deployment", "backend")
    assert "replicas" not in backend["spec"]  # else every `helm upgrade` would reset the HPA's choice
    hpa = component(docs, "HorizontalPodAutoscaler", "backend")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": backend["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    assert container(backend)["resources"]["requests"]["cpu"]  # CPU utilisation needs a request
    pdb = component(docs, "PodDisruptionBudget", "backend")
    assert matches(pdb["spec"]["selector"], pod_labels(backend))


def test_hpa_off_uses_fixed_replicas():
    docs = render("hpa-off")
    assert find(docs, "HorizontalPodAutoscaler") == []
    assert component(docs, "Deployment", "backend")["spec"]["replicas"] == 1
    assert find(docs, "PodDisruptionBudget") == []


def test_rolling_update_drops_nothing():
    backend = component(render("default"), "Deployment", "backend")
    spec = backend["spec"]["template"]["spec"]
    c = container(backend)
    assert backend["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    env = env_of(c)
    total = pre_stop + float(env["VISION_DRAIN_DELAY"]["value"]) + float(env["VISION_SHUTDOWN_TIMEOUT"]["value"])
    assert 0 < pre_stop and total < spec["terminationGracePeriodSeconds"]
    spread = spec["topologySpreadConstraints"][0]
    assert matches(spread["labelSelector"], pod_labels(backend))


# ---- network policies --------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_backend_api_port_admits_every_client_of_every_cluster(profile):
    """Ingress controllers (any namespace and labels), ServiceLB / NodePort traffic from node
    addresses, debug pods anywhere, the frontend, cloudflared and the helm test pod reach the API
    port; the metrics port admits none of them but the pods of the release's namespace that are no
    tunnel; nothing else is open and the backend has no egress."""
    docs = render("tunnel-quick")
    cluster = Cluster(docs, {**profile.namespaces, "vision-ai": {}})
    server, port = service_backend(cluster, "vision-ai", "vision-ai-backend", constants.BACKEND_PORT)
    own = [Source(d["metadata"]["name"], "vision-ai", pod_labels(d)) for d in find(docs, "Deployment")
           if d["metadata"]["labels"]["app.kubernetes.io/component"] != "backend"]
    own += [Source("helm test", "vision-ai", pod_labels(p)) for p in find(docs, "Pod")]
    assert len(own) == 3  # frontend, cloudflared, helm test
    # The backend itself may open nothing (no egress), not even its own Service.
    assert not reaches(cluster, Source("backend", "vision-ai", server.labels), server, port)
    for client in profile.clients + own:
        assert reaches(cluster, client, server, port), client.name
        assert not reaches(cluster, client, server, constants.METRICS_PORT + 1), client.name  # nothing else listens
    scrapers = {c.name for c in profile.clients + own if reaches(cluster, c, server, constants.METRICS_PORT)}
    # The UI's own egress allows only the API port; cloudflared is excluded by the policy itself.
    assert scrapers == {DEBUG_APP.name, PORT_FORWARD.name, "helm test"}, scrapers
    assert reaches(cluster, PROMETHEUS, server, constants.METRICS_PORT)
    assert not reaches(cluster, PROMETHEUS_ELSEWHERE, server, constants.METRICS_PORT)
    policy = component(docs, "NetworkPolicy", "backend")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["egress"] == []


def test_api_clients_restrict_the_port_when_set():
    docs = render("full")  # apiClients: Traefik and Prometheus only
    cluster = Cluster(docs, {"kube-system": {}, "monitoring": {}, "default": {}, "ingress-nginx": {}})
    server, port = service_backend(cluster, "vision-ai", "vision-ai-backend", constants.BACKEND_PORT)
    assert reaches(cluster, TRAEFIK, server, port)
    assert reaches(cluster, Source("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}), server, port)
    for client in (INGRESS_NGINX, DEBUG_DEFAULT, NODE):
        assert not reaches(cluster, client, server, port), client.name
    assert reaches(cluster, PORT_FORWARD, server, port)


def _metrics_cluster(tmp_path, network_policy: dict) -> tuple[Cluster, object]:
    values = tmp_path / "metrics-values.yaml"
    values.write_text(yaml.safe_dump({"networkPolicy": network_policy}))
    docs = load_docs(template([values]).stdout)
    cluster = Cluster(docs, {"kube-system": {}, "default": {}, "monitoring": {}, "observability": {"team": "obs"}})
    server, port = service_backend(cluster, "vision-ai", "vision-ai-backend-metrics", constants.METRICS_PORT)
    assert port == constants.METRICS_PORT
    return cluster, server


def test_metrics_scrapers_are_configurable_and_an_empty_list_admits_nobody(tmp_path):
    grafana = Source("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"})
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    # Narrowed to the Prometheus pods of the monitoring namespace (a list value replaces the default).
    cluster, server = _metrics_cluster(tmp_path, {"metricsClients": [
        {**monitoring, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]})
    assert reaches(cluster, PROMETHEUS, server, constants.METRICS_PORT)
    assert not reaches(cluster, grafana, server, constants.METRICS_PORT)
    # Another namespace, chosen by its own label.
    cluster, server = _metrics_cluster(tmp_path, {"metricsClients": [
        {"namespaceSelector": {"matchLabels": {"team": "obs"}}}]})
    assert reaches(cluster, PROMETHEUS_ELSEWHERE, server, constants.METRICS_PORT)
    assert not reaches(cluster, PROMETHEUS, server, constants.METRICS_PORT)
    # Nobody configured: the port gets no rule at all (not a rule without `from`, which admits all).
    cluster, server = _metrics_cluster(tmp_path, {"metricsClients": [], "metricsFromReleaseNamespace": False})
    policy = next(p for p in cluster.of_kind("NetworkPolicy") if p["metadata"]["name"] == "vision-ai-backend")
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == [constants.BACKEND_PORT]
    for client in (PROMETHEUS, DEBUG_APP, DEBUG_DEFAULT, NODE):
        assert not reaches(cluster, client, server, constants.METRICS_PORT), client.name
    assert reaches(cluster, PORT_FORWARD, server, constants.METRICS_PORT)
    # A Prometheus outside the cluster, by address.
    cluster, server = _metrics_cluster(tmp_path, {"metricsClients": [{"ipBlock": {"cidr": "172.18.0.0/16"}}]})
    assert reaches(cluster, NODE, server, constants.METRICS_PORT)
    assert not reaches(cluster, PROMETHEUS, server, constants.METRICS_PORT)


def test_frontend_egress_is_dns_and_backend_only():
    docs = render("ui")
    policy = component(docs, "NetworkPolicy", "frontend")
    egress = policy["spec"]["egress"]
    assert egress[0] == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    backend = component(docs, "Deployment", "backend")
    assert matches(egress[1]["to"][0]["podSelector"], pod_labels(backend))
    assert egress[1]["ports"] == [{"port": constants.BACKEND_PORT, "protocol": "TCP"}]
    assert len(egress) == 2


# ---- secrets ----------------------------------------------------------------------------------------

def test_no_secrets_by_default():
    docs = render("default")
    assert find(docs, "Secret") == []
    assert "VISION_API_KEYS" not in env_of(container(component(docs, "Deployment", "backend")))


def test_api_keys_come_from_a_secret():
    docs = render("api-keys")
    keys = yaml.safe_load((CHART / "ci" / "api-keys-values.yaml").read_text())["apiKeys"]["keys"]
    (secret,) = find(docs, "Secret")
    assert secret["stringData"] == {"api-keys": ",".join(keys), "client-api-key": keys[0]}
    backend_env = env_of(container(component(docs, "Deployment", "backend")))
    frontend_env = env_of(container(component(docs, "Deployment", "frontend")))
    ref = {"name": secret["metadata"]["name"]}
    assert backend_env["VISION_API_KEYS"]["valueFrom"]["secretKeyRef"] == {**ref, "key": "api-keys"}
    # The public UI does not launder the key: by default it asks each visitor for theirs.
    assert "VISION_API_KEY" not in frontend_env
    (test_pod,) = find(docs, "Pod")
    test_env = env_of(test_pod["spec"]["containers"][0])
    assert test_env["VISION_API_KEY"]["valueFrom"]["secretKeyRef"] == {**ref, "key": "client-api-key"}
    shared = load_docs(template(SCENARIOS["api-keys"], ["frontend.shareApiKey=true"]).stdout)
    shared_env = env_of(container(component(shared, "Deployment", "frontend")))
    assert shared_env["VISION_API_KEY"] == test_env["VISION_API_KEY"]
    # The key values appear nowhere but in the Secret.
    others = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    assert not any(k in others for k in keys)


def test_existing_secrets_are_used_not_created():
    docs = render("full")  # apiKeys.existingSecret; the inline tunnel token makes one Secret
    secrets = find(docs, "Secret")
    assert [s["metadata"]["name"] for s in secrets] == ["vision-ai-tunnel-token"]
    env = env_of(container(component(docs, "Deployment", "backend")))
    assert env["VISION_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "vision-ai-keys"


# ---- cloudflared -------------------------------------------------------------------------------

def test_quick_tunnel():
    docs = render("tunnel-quick")
    deploy = component(docs, "Deployment", "cloudflared")
    c = container(deploy)
    assert deploy["spec"]["replicas"] == 1
    args = c["args"]
    assert args[0] == "tunnel" and "--no-autoupdate" in args and "run" not in args
    assert args[args.index("--metrics") + 1] == "0.0.0.0:2000"
    assert args[args.index("--url") + 1] == "http://traefik.kube-system.svc.cluster.local:80"
    assert c["livenessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    svc = component(docs, "Service", "cloudflared")
    assert svc["spec"]["ports"][0]["port"] == 2000  # `visionctl tunnel` reads /quicktunnel here
    assert c["image"] == f"docker.io/cloudflare/cloudflared:{VALUES['cloudflared']['image']['tag']}"


def test_token_tunnel():
    docs = render("tunnel-token")
    deploy = component(docs, "Deployment", "cloudflared")
    c = container(deploy)
    assert deploy["spec"]["replicas"] == 2
    assert c["args"][-1] == "run" and "--url" not in c["args"] and "--no-autoupdate" in c["args"]
    assert env_of(c)["TUNNEL_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "vision-ai-tunnel", "key": "token"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/ready"
    assert find(docs, "Secret") == []
    assert component(docs, "PodDisruptionBudget", "cloudflared")["spec"]["maxUnavailable"] == 1


def test_tunnel_off_by_default():
    assert find(render("default"), "Deployment", component="cloudflared") == []


# ---- helm test hook -----------------------------------------------------------------------------

def test_helm_test_hook_uses_backend_image_and_sample():
    docs = render("default")
    (pod,) = find(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["image"] == container(component(docs, "Deployment", "backend"))["image"]
    assert c["command"][0] == "/opt/venv/bin/python"
    (cm,) = find(docs, "ConfigMap", name=pod["spec"]["volumes"][0]["configMap"]["name"])
    assert base64.b64decode(cm["binaryData"]["sample.png"]) == (ROOT / "samples/mnist/7-7.png").read_bytes()
    compile(cm["data"]["test_predict.py"], "test_predict.py", "exec")  # at least valid Python
    assert env_of(c)["EXPECTED_LABEL"]["value"] == "7"
    assert template(skip_tests=True).stdout.count("helm.sh/hook") == 0


def test_notes_print_urls_and_curl():
    result = helm("install", "vision-ai", str(CHART), "--dry-run=client", "-n", "vision-ai")
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "http://localhost:8080/predict" in notes and "curl -s -X POST" in notes
    assert "samples/mnist/7-7.png" in notes and "helm test vision-ai" in notes


def test_common_labels_and_annotations_reach_every_object():
    docs = load_docs(template(set_values=["commonLabels.team=ml", "commonAnnotations.owner=ml"]).stdout)
    for doc in docs:
        assert doc["metadata"]["labels"]["team"] == "ml", doc["kind"]
        assert doc["metadata"]["annotations"]["owner"] == "ml", doc["kind"]


# ---- cloudflared/ named-tunnel template -------------------------------------------------------------

def rendered_tunnel_config() -> dict:
    """The template rendered like ``envsubst`` does (``${VAR}``; a regex's trailing ``$`` stays)."""
    import re

    text = (ROOT / "cloudflared" / "config.yml.tmpl").read_text()
    values = {"TUNNEL_ID": "00000000-0000-0000-0000-000000000000", "CREDENTIALS_FILE": "/creds.json",
              "API_HOSTNAME": "api.example.com", "UI_HOSTNAME": "vision.example.com",
              "API_ORIGIN": "http://vision-ai-backend.vision-ai.svc.cluster.local:8080",
              "UI_ORIGIN": "http://vision-ai-frontend.vision-ai.svc.cluster.local:8501"}
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    assert placeholders == set(values)
    readme = (ROOT / "cloudflared" / "README.md").read_text()
    assert all(name in readme for name in placeholders)
    return yaml.safe_load(re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)], text))


def tunnel_route(config: dict, host: str, path: str) -> str:
    """The service cloudflared picks: first rule whose hostname and path regex (searched) match."""
    import re

    for rule in config["ingress"]:
        if rule.get("hostname", host) == host and re.search(rule.get("path", ""), path):
            return rule["service"]
    raise AssertionError("no catch-all rule")


def test_tunnel_template_publishes_api_and_ui_but_not_metrics():
    config = rendered_tunnel_config()
    assert set(config["ingress"][-1]) == {"service"} and config["ingress"][-1]["service"] == "http_status:404"
    api, ui = "http://vision-ai-backend.vision-ai.svc.cluster.local:8080", \
        "http://vision-ai-frontend.vision-ai.svc.cluster.local:8501"
    # The origins are the chart's Service names and ports.
    docs = render("ui")
    for svc, origin in ((component(docs, "Service", "backend"), api), (component(docs, "Service", "frontend"), ui)):
        assert origin == f"http://{svc['metadata']['name']}.vision-ai.svc.cluster.local:{svc['spec']['ports'][0]['port']}"
    for path in ("/predict", "/v1/models", "/v1/models/mnist/predict", "/openapi.json", "/healthz", "/readyz"):
        assert tunnel_route(config, "api.example.com", path) == api, path
    for path in ("/metrics", "/metrics/", "/", "/predict/../metrics", "/x/predict"):
        assert tunnel_route(config, "api.example.com", path) == "http_status:404", path
    assert tunnel_route(config, "vision.example.com", "/") == ui
    assert tunnel_route(config, "vision.example.com", "/_stcore/stream") == ui
    assert tunnel_route(config, "vision.example.com", "/metrics") == "http_status:404"
    assert tunnel_route(config, "other.example.com", "/predict") == "http_status:404"
    # Every GET route of the backend except /metrics is reachable through the API hostname (and the
    # JSON index at / stays unrouted there: the ingress sends / to the UI, so the tunnel does not
    # publish it either).
    for path in backend_routes() - {"/metrics", "/"}:
        assert tunnel_route(config, "api.example.com", path.replace("<name>", "mnist")) == api, path
    # The dashboard instructions quote the same path regex (one rule, two places).
    api_regex = next(r["path"] for r in config["ingress"] if r.get("hostname") == "api.example.com" and "path" in r)
    assert f"`{api_regex}`" in (ROOT / "cloudflared" / "README.md").read_text()
    assert not any(token in api_regex for token in ("(?=", "(?!", "(?<"))  # Go's RE2 has no lookaround


def test_every_value_is_documented():
    """Every leaf of values.yaml has a row in the chart README's generated tables (maps with a
    default, like the Grafana labels, are documented as one row)."""
    readme = (CHART / "README.md").read_text()
    missing = []

    def walk(node, prefix):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if f"| `{path}` " in readme:
                continue
            if isinstance(value, dict) and value:
                walk(value, path + ".")
            else:
                missing.append(path)

    walk(VALUES, "")
    assert missing == []


def test_service_monitor_scrapes_backend_metrics_port():
    """No schema exists for this CRD in kubernetes-validate, so check what Prometheus would use:
    the ServiceMonitor selects only the metrics Service, whose named port ends on the container's
    metrics port; the PodMonitor names that container port directly."""
    docs = render("full")
    (sm,) = find(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"  # the operator's selector label
    selected = [s for s in find(docs, "Service") if matches(sm["spec"]["selector"], s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in selected] == ["vision-ai-backend-metrics"]
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["vision-ai"]
    (endpoint,) = sm["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    (svc_port,) = [p for p in selected[0]["spec"]["ports"] if p["name"] == endpoint["port"]]
    server, port = service_backend(Cluster(docs), "vision-ai", "vision-ai-backend-metrics", svc_port["port"])
    assert port == constants.METRICS_PORT and server.labels == pod_labels(component(docs, "Deployment", "backend"))
    assert find(render("default"), "ServiceMonitor") == []
    assert find(render("default"), "PodMonitor") == []

    pod_docs = load_docs(template(set_values=["metrics.podMonitor.enabled=true",
                                              "metrics.podMonitor.labels.release=prometheus"]).stdout)
    (pm,) = find(pod_docs, "PodMonitor")
    assert find(pod_docs, "ServiceMonitor") == [] and pm["metadata"]["labels"]["release"] == "prometheus"
    assert matches(pm["spec"]["selector"], pod_labels(component(pod_docs, "Deployment", "backend")))
    assert not any(matches(pm["spec"]["selector"], pod_labels(d)) for d in find(pod_docs, "Deployment")
                   if d["metadata"]["labels"]["app.kubernetes.io/component"] != "backend")
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in container(component(pod_docs, "Deployment", "backend"))["ports"]}
    assert (ports[endpoint["port"]], endpoint["path"]) == (constants.METRICS_PORT, "/metrics")


def test_notes_warn_loudly_when_publishing_without_keys():
    def notes(*sets):
        args = [a for s in sets for a in ("--set", s)]
        return helm("install", "vision-ai", str(CHART), "--dry-run=client", "-n", "vision-ai", *args).stdout.split(
            "NOTES:", 1)[1]

    assert "WARNING" not in notes()
    assert "API keys OFF" in notes("cloudflared.enabled=true")
    assert "API keys OFF" in notes("ingress.hostname=vision.example.com")
    assert "WARNING" not in notes("cloudflared.enabled=true", "apiKeys.enabled=true", "apiKeys.keys={"
                                  "abcdefghijklmnopqrstuvwxyz}")


def test_traefik_rate_limit_only_where_its_crds_exist():
    base = ["template", "vision-ai", str(CHART), "-n", "vision-ai", "--set", "ingress.traefikRateLimit.enabled=true"]
    without = load_docs(helm(*base).stdout)
    assert not find(without, "Middleware")  # a cluster without Traefik still installs
    assert all("traefik.ingress.kubernetes.io/router.middlewares" not in (i["metadata"].get("annotations") or {})
               for i in find(without, "Ingress"))
    with_crds = load_docs(helm(*base, "--api-versions", "traefik.io/v1alpha1/Middleware").stdout)
    (mw,) = find(with_crds, "Middleware")
    assert mw["spec"]["rateLimit"] == {"average": 20, "burst": 40}
    (ingress,) = find(with_crds, "Ingress")
    annotation = ingress["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"]
    assert annotation == f"vision-ai-{mw['metadata']['name']}@kubernetescrd"
