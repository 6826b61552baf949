"""Alert rules, dashboard and the documented PromQL, checked by the real promtool, helm and Prometheus.

- ``promtool check rules`` and ``promtool test rules`` (tests/promtool/): every alert has synthetic
  series that must fire it and series that must not.
- The chart renders the same rules (PrometheusRule, only when the CRD exists) and the same
  dashboard (sidecar ConfigMap) as deploy/observability/, which are byte-identical copies.
- A real Prometheus scrapes a real backend under a little traffic, evaluates the rules, and every
  PromQL expression in docs/operations.md, the rules and the dashboard must evaluate without error and return
  data. Then the backend restarts on the same port and the restart alert must fire.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import yaml
from helm_render import CHART, ROOT, helm, kubernetes_versions, load_docs, validate_objects

from devkit.backend_server import BackendServer
from devkit.prometheus_server import PrometheusServer, mixed_traffic, require_prometheus

RULES = CHART / "files" / "vision-ai.rules.yml"
DASHBOARD = CHART / "files" / "vision-ai-dashboard.json"
PLAIN = ROOT / "deploy" / "observability"
RULE_TESTS = ROOT / "tests" / "promtool" / "vision-ai.rules.test.yml"
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
API_DOC = (ROOT / "docs" / "verdict.md").read_text()

# Metrics another branch adds: expressions that read them must evaluate, but may return no data
# until that branch is merged (then delete the entry).
# Metrics that may legitimately have no series yet in the live test (none today: the shed counter
# exports its reasons at zero from the start).
NO_DATA_YET: dict[str, str] = {
    # Recorded only while a model release runs (tests/backend/test_releases.py covers them).
    "vision_release_requests_total": "no release running",
    "vision_release_compared_images_total": "no release running",
    "vision_release_inference_duration_seconds": "no release running",
}

# What Grafana substitutes in the dashboard's queries ("All" is the regex .*).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$job": ".*"}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr with Grafana's variables substituted) of every query in the dashboard."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


def documented_promql(text: str = OPERATIONS) -> list[str]:
    """Lines of docs/operations.md's (or another doc's) ```promql blocks, without their trailing # comments."""
    exprs = []
    for block in re.findall(r"```promql\n(.*?)```", text, re.S):
        for line in block.splitlines():
            expr = re.sub(r"\s+#.*$", "", line).strip()
            if expr and not expr.startswith("#"):
                exprs.append(expr)
    return exprs


def with_bool(expr: str) -> str:
    """``x > 0.5`` → ``x > bool 0.5`` outside string literals: the comparison then returns 0/1 for
    every series instead of filtering, so an alert expression "returns data" whether or not it
    fires right now."""
    parts = re.split(r'("(?:[^"\\]|\\.)*")', expr)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"(==|!=|>=|<=|>|<)(\s*)(?=[\d(])", r"\1 bool\2", parts[i])
    return "".join(parts)


def all_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every PromQL expression the project ships."""
    out = [(f"docs/operations.md: {e}", e) for e in documented_promql()]
    out += [(f"docs/verdict.md: {e}", e) for e in documented_promql(API_DOC)]
    for rule in rules():
        name = rule.get("record") or rule["alert"]
        out.append((f"rule {name}", rule["expr"] if "record" in rule else with_bool(rule["expr"])))
    out += [(f"dashboard: {title}", expr) for title, expr in dashboard_targets()]
    return out


# ---- files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [RULES.name, DASHBOARD.name])
def test_plain_files_are_the_charts_files(name):
    """One definition: deploy/observability/ holds byte-identical copies of the chart's files."""
    assert (PLAIN / name).read_bytes() == (CHART / "files" / name).read_bytes(), (
        f"deploy/observability/{name} differs from charts/vision-ai/files/{name}; edit the chart's "
        f"file and run: cp charts/vision-ai/files/{name} deploy/observability/")


def test_every_alert_has_severity_summary_and_runbook():
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))
    assert {"VisionAIErrorBudgetBurn", "VisionAILatencyBudgetBurn", "VisionAIReplicaNotReady",
            "VisionAINoTraffic", "VisionAIWorkersRestarting", "VisionAILoadShedding"} <= set(names)
    for alert in alerts():
        assert alert["labels"]["severity"] in ("critical", "warning", "info"), alert["alert"]
        assert {"summary", "description", "runbook"} <= set(alert["annotations"]), alert["alert"]


def test_the_operations_doc_lists_every_alert():
    section = OPERATIONS.split("## Observability", 1)[1].split("\n## ", 1)[0]
    for alert in alerts():
        assert f"`{alert['alert']}`" in section, f"docs/operations.md's Observability does not list {alert['alert']}"


def test_dashboard_is_well_formed():
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
    exprs = " ".join(e for _, e in dashboard_targets())
    # Everything the issue asks the dashboard to show.
    for metric in ("vision_http_requests_total", "vision_http_request_duration_seconds_bucket",
                   "vision_preprocessing_duration_seconds", "vision_inference_duration_seconds",
                   "vision_batch_size", "vision_predictions_total", "vision_http_requests_in_flight",
                   "vision_http_queue_depth", "vision_model_info", "vision_http_requests_shed_total"):
        assert metric in exprs, metric
    assert "$" not in exprs, "a Grafana variable the live test does not substitute"


# ---- promtool ----------------------------------------------------------------------------------

def test_promtool_check_rules():
    promtool = require_prometheus("promtool")
    result = subprocess.run([promtool, "check", "rules", str(RULES), str(PLAIN / RULES.name)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    promtool = require_prometheus("promtool")
    result = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                            timeout=120, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_cover_every_alert_firing_and_not_firing():
    """Each alert has a case where it fires and one where series of the same test must not fire it
    (an empty expectation, or input series of a job/instance the expected alerts leave out)."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == ["../../charts/vision-ai/files/vision-ai.rules.yml"]
    fires, holds = set(), set()
    for case in tests["tests"]:
        inputs = [yaml.safe_load(re.sub(r"^[^{]*", "", s["series"]).replace("=", ": ")) or {}
                  for s in case["input_series"]]
        for check in case.get("alert_rule_test", []):
            expected = check["exp_alerts"]
            if not expected:
                holds.add(check["alertname"])
                continue
            fires.add(check["alertname"])
            fired = {(a["exp_labels"].get("job"), a["exp_labels"].get("instance")) for a in expected}
            if any((s.get("job"), s.get("instance")) not in fired and (s.get("job"), None) not in fired
                   for s in inputs):
                holds.add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fires == set(), "alerts no unit test fires"
    assert names - holds == set(), "alerts with no series that must not fire them"


# ---- chart -------------------------------------------------------------------------------------

CRD = "monitoring.coreos.com/v1/PrometheusRule"
ON = ["--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true"]


def _render(*args: str) -> list[dict]:
    return load_docs(helm("template", "vision-ai", str(CHART), "--namespace", "vision-ai", *args).stdout)


def test_chart_default_renders_neither():
    docs = _render("--api-versions", CRD)
    assert not [d for d in docs if d["kind"] == "PrometheusRule"]
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]


def test_chart_prometheusrule_needs_the_crd():
    """Enabled on a cluster without the Prometheus Operator: nothing rendered, install succeeds."""
    assert not [d for d in _render(*ON) if d["kind"] == "PrometheusRule"]


def test_chart_ships_the_same_rules_and_dashboard(tmp_path):
    docs = _render(*ON, "--api-versions", CRD, "--set", "metrics.prometheusRule.labels.release=kps",
                   "--set", "metrics.grafanaDashboard.annotations.grafana_folder=Vision AI")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "vision-ai" and rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # What the operator hands Prometheus is a valid rule file (templates like {{ $labels.job }} intact).
    rendered = tmp_path / "rendered.rules.yml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    promtool = require_prometheus("promtool")
    check = subprocess.run([promtool, "check", "rules", str(rendered)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Vision AI"
    assert json.loads(cm["data"]["vision-ai.json"]) == dashboard()
    for version in kubernetes_versions():
        assert validate_objects([rule, cm], version) == []


def test_chart_lint_with_observability_on():
    result = helm("lint", "--strict", str(CHART), *ON, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- a real Prometheus scraping a real backend -------------------------------------------------

@pytest.fixture(scope="module")
def stack():
    require_prometheus("prometheus")
    backend = BackendServer(env={"VISION_LOG_LEVEL": "WARNING"}).start()
    try:
        # The scrape target is the metrics port, as the chart's ServiceMonitor/PodMonitor/annotations
        # say; the API port has no /metrics.
        with PrometheusServer([f"127.0.0.1:{backend.metrics_port}"], rule_files=[RULES], interval="1s") as prom:
            prom.wait_for('up{job="vision-ai"} == 1')
            mixed_traffic(backend.url)
            time.sleep(2.5)  # a few scrapes apart, so rates over the traffic are non-zero
            mixed_traffic(backend.url)
            prom.wait_for('vision_predictions_total{model="fashion-mnist"}')
            time.sleep(2.5)
            yield backend, prom
    finally:
        backend.__exit__(None, None, None)


def _wait_rules_evaluated(prom, timeout=15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        if all(r["health"] != "unknown" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def test_prometheus_evaluates_every_rule_without_error(stack):
    _, prom = stack
    found = _wait_rules_evaluated(prom)
    assert {r["name"] for r in found} == {r.get("record") or r["alert"] for r in rules()}
    bad = {r["name"]: r.get("lastError") or r["health"] for r in found if r["health"] != "ok"}
    assert bad == {}


def test_every_promql_expression_evaluates_and_returns_data(stack):
    _, prom = stack
    _wait_rules_evaluated(prom)
    expressions = all_expressions()
    assert len(documented_promql()) >= 3 and len(expressions) > 50
    errors, empty = [], []
    for where, expr in expressions:
        try:
            result = prom.query(expr)
        except Exception as exc:  # noqa: BLE001 - report every failing expression at once
            errors.append(f"{where}: {exc}")
            continue
        if not result and not any(metric in expr for metric in NO_DATA_YET):
            empty.append(where)
    assert errors == [], "\n".join(errors)
    assert empty == [], "no data for:\n" + "\n".join(empty)


def test_restart_of_the_backend_fires_the_restart_alert(stack):
    """The restart signal is real: the same target restarted → its scrape counter reset → alert."""
    backend, prom = stack
    assert prom.query('ALERTS{alertname="VisionAIWorkersRestarting"}') == []
    prom.wait_for("vision_metrics_scrapes_total >= 2")
    backend.stop()
    backend.start()  # same ports: the same target to Prometheus, as a container restart in a pod
    firing = prom.wait_for('ALERTS{alertname="VisionAIWorkersRestarting",alertstate="firing"}', timeout=20)
    assert firing[0]["metric"]["instance"] == f"127.0.0.1:{backend.metrics_port}"


def test_render_dashboard_script_draws_the_panels(tmp_path):
    """The dashboard picture in docs/operations.md comes from this script; a short run must still draw a PNG."""
    import sys

    require_prometheus("prometheus")
    out = tmp_path / "dashboard.png"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "render-dashboard.py"), "--seconds", "2",
                             "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 50_000
