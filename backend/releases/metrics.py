"""Per-version series, on the app's registry (so ``/metrics`` and multiprocess mode cover them).

Recorded only while a name has a candidate: with nothing being released the request path pays
nothing here. ``figures`` reads them back (every worker's values in multiprocess mode) for the judge.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from backend.metrics import STAGE_BUCKETS, Children
from backend.releases.record import ACTIONS

CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class ReleaseMetrics:
    def __init__(self, registry: CollectorRegistry, multiprocess_mode: bool) -> None:
        self.registry, self.multiprocess = registry, multiprocess_mode
        r = registry
        self.requests = Counter("vision_release_requests", "Requests answered by a model version while a release "
                                "runs (role: stable, candidate = canary share, shadow = copies, "
                                "compare = stable re-run beside the canary).",
                                ["model", "version", "role"], registry=r)
        self.errors = Counter("vision_release_errors", "Failed runs of a candidate (the user got stable's answer).",
                              ["model", "version"], registry=r)
        self.latency = Histogram("vision_release_inference_duration_seconds", "Model run time per request, "
                                 "by version, while a release runs.", ["model", "version"], buckets=STAGE_BUCKETS,
                                 registry=r)
        self.confidence = Histogram("vision_release_confidence", "Top-class probability per image, by version.",
                                    ["model", "version"], buckets=CONFIDENCE_BUCKETS, registry=r)
        self.images = Counter("vision_release_images", "Images run per version while a release runs.",
                              ["model", "version"], registry=r)
        self.ood = Counter("vision_release_ood_images", "Images a version called out-of-distribution.",
                           ["model", "version"], registry=r)
        self.compared = Counter("vision_release_compared_images", "Candidate predictions compared with stable's "
                                "on the same images (result: agree, disagree).", ["model", "version", "result"],
                                registry=r)
        self.dropped = Counter("vision_release_shadow_dropped", "Comparison copies dropped because the queue was "
                               "full (users are never slowed down by a candidate).", ["model"], registry=r)
        self.decisions = Gauge("vision_release_decisions", "Release decisions in the audit history, by action "
                               "(start, refused, promote, rollback); all-time counts.", ["model", "action"],
                               multiprocess_mode="livemax", registry=r)
        self.role = Gauge("vision_release_version_role", "1 for each version's current role (stable, candidate).",
                          ["model", "version", "role"], multiprocess_mode="livemax", registry=r)
        self.weight = Gauge("vision_release_canary_weight_percent", "Share of requests the canary candidate gets "
                            "(0: none, or a shadow release).", ["model"], multiprocess_mode="livemax", registry=r)
        self.requests_by = Children(self.requests)
        self.latency_by = Children(self.latency)
        self.confidence_by = Children(self.confidence)
        self.images_by = Children(self.images)
        self.ood_by = Children(self.ood)
        self.compared_by = Children(self.compared)
        self._roles: set[tuple[str, str, str]] = set()

    def export_state(self, name: str, stable: str, candidate: str | None, weight: int, decisions: dict) -> None:
        for action in ACTIONS:
            self.decisions.labels(name, action).set(decisions.get(action, 0))
        current = {(name, stable, "stable")} | ({(name, candidate, "candidate")} if candidate else set())
        for labels in {lb for lb in self._roles if lb[0] == name} - current:
            self.role.labels(*labels).set(0)
        for labels in current:
            self.role.labels(*labels).set(1)
        self._roles |= current
        self.weight.labels(name).set(weight if candidate else 0)

    def observe(self, name: str, version: str, role: str, seconds: float, probs, in_distribution=None) -> None:
        key = (name, version)
        self.requests_by[(name, version, role)].inc()
        self.latency_by[key].observe(seconds)
        self.images_by[key].inc(len(probs))
        confidence = self.confidence_by[key]
        for p in probs.max(axis=1):
            confidence.observe(float(p))
        if in_distribution is not None:
            self.ood_by[key].inc(int(len(in_distribution) - int(in_distribution.sum())))

    def figures(self, name: str, stable: str, candidate: str) -> dict:
        """Totals so far (all workers) of the series the judge reads."""
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        f = {"agree": 0.0, "disagree": 0.0, "candidate_requests": 0.0, "candidate_errors": 0.0,
             "candidate_seconds": 0.0, "candidate_runs": 0.0, "stable_seconds": 0.0, "stable_runs": 0.0,
             "candidate_images": 0.0, "candidate_ood": 0.0, "stable_images": 0.0, "stable_ood": 0.0}
        who = {candidate: "candidate", stable: "stable"}
        for family in registry.collect():
            if not family.name.startswith("vision_release_"):
                continue
            for s in family.samples:
                if s.labels.get("model") != name or s.labels.get("version") not in who:
                    continue
                role = who[s.labels["version"]]
                if s.name == "vision_release_compared_images_total" and role == "candidate":
                    f[s.labels["result"]] += s.value
                elif s.name == "vision_release_requests_total" and role == "candidate":
                    f["candidate_requests"] += s.value
                elif s.name == "vision_release_errors_total" and role == "candidate":
                    f["candidate_errors"] += s.value
                elif s.name == "vision_release_inference_duration_seconds_sum":
                    f[f"{role}_seconds"] += s.value
                elif s.name == "vision_release_inference_duration_seconds_count":
                    f[f"{role}_runs"] += s.value
                elif s.name == "vision_release_images_total":
                    f[f"{role}_images"] += s.value
                elif s.name == "vision_release_ood_images_total":
                    f[f"{role}_ood"] += s.value
        return f
