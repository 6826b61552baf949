"""What is running: Deployments, pods and HPAs of the release (from ``kubectl get -o json``) and
the ``kubectl logs`` command line for a component."""

from __future__ import annotations

import json
from dataclasses import dataclass

from visionctl.ops.deploy import Target
from visionctl.ops.runner import Runner, StepFailed


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
