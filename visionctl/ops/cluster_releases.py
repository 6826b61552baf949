"""``visionctl release ... --context CTX``: the same handover on a cluster running the chart.

* The release state is the ConfigMap ``<release>-releases`` (one key ``<name>.json`` per served
  name, the same format as the local file), mounted read-only into every backend pod, which
  applies a change when the kubelet refreshes the mount. ``visionctl`` writes it with ``kubectl
  replace`` carrying the resourceVersion it read: two writers at once cannot both win (the second
  gets a conflict and retries), which is the cluster's stand-in for the local file lock.
* A new version ships as a model image (``Dockerfile.model``: the server's base image plus the
  artifact) loaded into the cluster the way its distribution needs, and listed in the chart value
  ``releases.versions``: ``helm upgrade --reuse-values`` rolls the pods, whose init containers copy
  it in. Only then is the candidate written to the ConfigMap, so no pod is ever asked to serve a
  version it does not carry. The server image is never rebuilt.
* The gate runs here first on this checkout's copy of the versions (``models/versions``, where every
  version shipped from here is stored) and again in every pod before any request.
* Pods cannot write the ConfigMap (read-only mount, no API credentials: ``automountServiceAccountToken:
  false``), so the judge's verdict on a cluster is applied by ``visionctl release judge --context``,
  which reads each pod's live figures through the API server's pod proxy, adds them up and decides
  with the same policy (run it from a CI job or ``--watch``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from backend.releases import judge as judges
from backend.releases import record, store
from backend.releases.record import Layout, ReleaseState
from visionctl.constants import CHART_DIR, NAMESPACE, RELEASE_NAME, REPO_ROOT
from visionctl.ops import orchestrate
from visionctl.ops.deploy import Target, rollout_argv
from visionctl.ops.releases import ReleaseError, Started, run_gate
from visionctl.ops.runner import Runner, StepFailed
from visionctl.ops.status import selector

MODEL_IMAGE = "vision-ai-model-{name}"
DOCKERFILE_MODEL = "Dockerfile.model"
CONFLICT_RETRIES = 5


class ClusterReleases:
    def __init__(self, context: str, namespace: str | None, console, runner: Runner | None = None,
                 models_dir: Path | None = None):
        self.target = Target(namespace=namespace or NAMESPACE, release=RELEASE_NAME, kube_context=context)
        self.runner = runner or Runner(console)
        self.layout = Layout.for_models_dir(models_dir or REPO_ROOT / "models")
        self.configmap = f"{self.target.release}-releases"

    # --- the state ConfigMap -----------------------------------------------------------------

    def _read(self, name: str) -> tuple[dict | None, ReleaseState]:
        argv = self.target.kubectl("get", "configmap", self.configmap, "-o", "json")
        result = self.runner.query(argv)
        if not result.ok:
            if "NotFound" in result.stderr:
                return None, ReleaseState(name=name)
            raise StepFailed("read the release state", f"`kubectl get configmap` exited with {result.returncode}",
                             argv=argv, tail=result.stderr[-2000:],
                             hint=f"is the chart installed in {self.target.namespace}? `visionctl status`")
        configmap = json.loads(result.stdout)
        data = (configmap.get("data") or {}).get(f"{name}.json")
        if data is None:
            return configmap, ReleaseState(name=name)
        return configmap, record.parse(data.encode(), name, f"configmap {self.configmap} key {name}.json")

    def _update(self, name: str, change) -> dict:
        """Read, apply ``change(state)`` and write back; retried when another writer came first."""
        for _ in range(CONFLICT_RETRIES):
            configmap, state = self._read(name)
            entry = change(state)
            body = configmap or {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": self.configmap, "namespace": self.target.namespace,
                "labels": {"app.kubernetes.io/part-of": "vision-ai", "app.kubernetes.io/component": "releases"}}}
            body.setdefault("data", {})[f"{name}.json"] = record.dumps(state).decode()
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(body, f)
            verb = "replace" if configmap else "create"
            result = self.runner.query(self.target.kubectl(verb, "-f", f.name))
            Path(f.name).unlink(missing_ok=True)
            if result.ok:
                return entry
            if "Conflict" not in result.stderr and "AlreadyExists" not in result.stderr:
                raise StepFailed("write the release state", f"`kubectl {verb}` exited with {result.returncode}",
                                 argv=self.target.kubectl(verb, "-f", "<state>"), tail=result.stderr[-2000:])
        raise StepFailed("write the release state", f"still conflicting after {CONFLICT_RETRIES} attempts")

    def _stable(self, state: ReleaseState) -> str:
        version = state.stable or store.base_version(self.layout, state.name)
        if version is None:
            raise ReleaseError(f"no base {state.name} model in {self.layout.models_dir} to compare with")
        return version

    # --- commands ----------------------------------------------------------------------------

    def start(self, name: str, artifact_dir: Path, mode: str, weight: int, policy: dict) -> Started:
        from backend.errors import ModelLoadError
        from backend.releases.policy import Policy

        _, current = self._read(name)
        if current.candidate is not None:
            raise ReleaseError(f"{name}: version {current.candidate} is already being released ({current.mode}); "
                               f"promote or roll it back first")
        stable = self._stable(current)
        try:
            card = store.add(self.layout, name, Path(artifact_dir))
            if card.version == stable:
                raise ReleaseError(f"{name}: version {card.version} is already stable")
            result = run_gate(self.layout, name, self.layout.version_dir(name, card.version),
                              store.model_dir(self.layout, name, stable), Policy.from_dict(policy))
        except ModelLoadError as exc:
            raise ReleaseError(str(exc)) from None
        who = record.actor("visionctl")
        if not result.passed:
            entry = self._update(name, lambda s: record.refuse(s, card.version, result.to_dict(), who))
            return Started(card.version, stable, result, entry)
        self.ship(name, card.version)
        entry = self._update(name, lambda s: record.start(s, card.version, self._stable(s), mode, weight, policy,
                                                          result.to_dict(), who))
        return Started(card.version, stable, result, entry)

    def ship(self, name: str, version: str) -> None:
        """Model image → the cluster's image store → ``releases.versions`` → pods rolled with it."""
        ref = f"{MODEL_IMAGE.format(name=name)}:{version}"
        self.runner.run(["docker", "build", "-f", str(REPO_ROOT / DOCKERFILE_MODEL), "-t", ref,
                         str(self.layout.version_dir(name, version))], title=f"build model image {ref}", timeout=600,
                        hint="is Docker running? `visionctl doctor`")
        found = orchestrate.detect_distro(self.runner, self.target.context)
        for title, argv in found.load_steps([ref]):
            self.runner.run(argv, title=title, timeout=600)
        result = self.runner.query(self.target.helm("get", "values", self.target.release, "-o", "json"))
        if not result.ok:
            raise StepFailed("read the chart values", "`helm get values` failed", tail=result.stderr[-2000:],
                             hint=f"is the chart installed? `visionctl deploy --context {self.target.context}`")
        values = json.loads(result.stdout or "{}") or {}
        versions = [v for v in (values.get("releases") or {}).get("versions") or []
                    if (v.get("name"), v.get("version")) != (name, version)]
        versions.append({"name": name, "version": version, "image": ref})
        self.runner.run(self.target.helm("upgrade", self.target.release, CHART_DIR, "--reuse-values",
                                         "--set-json", f"releases.versions={json.dumps(versions)}"),
                        title=f"add {name} {version} to the backend pods", cwd=REPO_ROOT, timeout=600)
        self.runner.run(rollout_argv(self.target, "backend", 300), title="wait for backend rollout", timeout=330)

    def promote(self, name: str, reason: str) -> dict:
        return self._decide(name, record.promote, reason)

    def rollback(self, name: str, reason: str) -> dict:
        return self._decide(name, record.rollback, reason)

    def _decide(self, name, transition, reason, who=None, figures=None) -> dict:
        def change(state):
            try:
                return transition(state, self._stable(state), who or record.actor("visionctl"), reason, figures)
            except record.TransitionError as exc:
                raise ReleaseError(str(exc)) from None
        return self._update(name, change)

    def status(self, name: str) -> dict:
        _, state = self._read(name)
        out = state.to_dict()
        out["stable"] = self._stable(state)
        out["policy"] = state.effective_policy().to_dict()
        out["stored_versions"] = store.versions(self.layout, name)
        return out

    # --- the judge for a cluster -------------------------------------------------------------

    def live_figures(self, name: str) -> list[dict]:
        """Each backend pod's figures for the running release (its GET /v1/models/<name>/versions)."""
        pods = json.loads(self.runner.query(self.target.kubectl(
            "get", "pods", "-l", selector(self.target, "backend"), "-o", "json")).stdout or "{}").get("items", [])
        out = []
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            path = f"/api/v1/namespaces/{self.target.namespace}/pods/{pod_name}:8080/proxy/v1/models/{name}/versions"
            result = self.runner.query(["kubectl", "--context", self.target.context, "get", "--raw", path])
            if result.ok:
                release = json.loads(result.stdout).get("release") or {}
                if release.get("live"):
                    out.append({"pod": pod_name, "candidate": release.get("candidate"), **release["live"]})
        return out

    def judge(self, name: str) -> tuple[str | None, str, dict]:
        """One verdict from all pods' figures together; applied to the ConfigMap when there is one."""
        _, state = self._read(name)
        if state.candidate is None:
            return None, "no release running", {}
        pods = [p for p in self.live_figures(name) if p["candidate"] == state.candidate]
        figures = combine(pods)
        action, reason = judges.decide(figures, state.effective_policy()) if pods else (None, "no figures yet")
        if action and state.effective_policy().auto:
            transition = record.promote if action == "promote" else record.rollback
            self._decide(name, transition, reason, who=record.actor("judge"), figures=figures)
        return action, reason, figures

    def watch(self, name: str, interval: float = 5.0, rounds: int = 720) -> None:
        for _ in range(rounds):
            action, _, _ = self.judge(name)
            if action:
                return
            time.sleep(interval)


def combine(pods: list[dict]) -> dict:
    """All pods' figures as one (counts add up; ratios weighted by the counts behind them)."""
    compared = sum(p.get("compared_images", 0) for p in pods)
    requests = sum(p.get("candidate_requests", 0) for p in pods)
    errors = sum(p.get("candidate_errors", 0) for p in pods)
    agree = sum((p.get("agreement") or 0) * p.get("compared_images", 0) for p in pods)
    out = {"pods": len(pods), "seconds": max((p.get("seconds", 0) for p in pods), default=0),
           "compared_images": compared, "candidate_requests": requests, "candidate_errors": errors,
           "agreement": round(agree / compared, 5) if compared else None,
           "error_rate": round(errors / (requests + errors), 5) if requests + errors else None}
    ratios = [(p["latency_ratio"], p.get("compared_images", 0)) for p in pods if p.get("latency_ratio")]
    if ratios and sum(w for _, w in ratios):
        out["latency_ratio"] = round(sum(r * w for r, w in ratios) / sum(w for _, w in ratios), 3)
    for key in ("candidate_ood_share", "stable_ood_share"):
        values = [p[key] for p in pods if p.get(key) is not None]
        if values:
            out[key] = max(values)
    return out
