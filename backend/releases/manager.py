"""The release side of a serving process: watch the state, load and gate versions, route, judge.

One :class:`Releases` per process. Its watcher thread polls each name's state file (every
``poll`` seconds; a stat, no read unless it changed), loads the versions it names, runs the gate on
a new candidate *before* publishing a route that includes it, and swaps the route and the
registry's stable model in one assignment each, so requests in flight keep the model they started
with and none fails during start, promote or rollback. The judge thread reads the per-version
figures every second while a candidate runs and writes its verdict to the state like any writer.
"""

from __future__ import annotations

import logging
import threading
import time

from backend.errors import ModelLoadError
from backend.model.inference import Model, Registry, load_model
from backend.releases import gate as gates
from backend.releases import golden as goldens
from backend.releases import judge, record, store
from backend.releases.metrics import ReleaseMetrics
from backend.releases.policy import Policy
from backend.releases.record import Layout, ReleaseState
from backend.releases.router import Comparer, Route, in_distribution

log = logging.getLogger("backend.releases")

RETIRE_AFTER = 60.0  # seconds a replaced model stays usable for requests and copies still holding it
CLIENT_HEADERS = ("X-Client-ID", "X-API-Key", "Authorization")


class VersionNotServed(LookupError):
    """The version is unknown, or known but not loaded here (retired, refused)."""


class Releases:
    def __init__(self, layout: Layout, registry: Registry, metrics, poll: float = 0.5):
        self.layout, self.registry, self.poll = layout, registry, poll
        self.metrics = ReleaseMetrics(metrics.registry, metrics.multiprocess)
        self.routes: dict[str, Route] = {}
        self.states: dict[str, ReleaseState] = {}
        self.live: dict[str, dict] = {}  # the judge's latest figures per name
        self.writable = record.writable(layout)
        self.registry_base: dict[str, str] = {}  # version of each name's base model (models folder)
        self._signatures: dict[str, tuple | None] = {}
        self._models: dict[tuple[str, str], Model] = {}
        self._gates: dict[tuple[str, str, str], gates.GateResult] = {}
        self._accuracy: dict[tuple[str, str], float] = {}
        self._golden: dict[str, goldens.GoldenSet] = {}
        self._baselines: dict[tuple[str, str], tuple[float, dict]] = {}
        self._comparer: Comparer | None = None
        self._stop = threading.Event()

    # --- request path ------------------------------------------------------------------------

    def predict(self, name: str, batch, headers=None, version: str | None = None):
        """Run ``batch`` on the version that answers this request → ``(result, model)``."""
        route = self.routes.get(name)
        if route is None:  # before the first sync: the registry's model
            model = self.registry.get(name)
            return model.predict(batch), model
        if version is not None:
            model = route.version(version)
            if model is None:
                raise self.not_served(name, version)
            return model.predict(batch), model
        if route.candidate is None:
            return route.stable.predict(batch), route.stable
        model = route.pick(client_key(headers) if headers is not None else None)
        start = time.perf_counter()
        try:
            result = model.predict(batch)
        except Exception:
            if model is route.stable:
                raise
            self.metrics.errors.labels(name, model.card.version).inc()
            model = route.stable  # the user gets stable's answer; the judge sees the error
            start = time.perf_counter()
            result = model.predict(batch)
        seconds = time.perf_counter() - start
        probs = gates.probabilities(result)
        candidate_served = model is route.candidate
        self.metrics.observe(name, model.card.version, "candidate" if candidate_served else "stable", seconds, probs,
                             in_distribution(result))
        if candidate_served or route.mode == "shadow":
            self._comparer.submit(route, batch, probs, candidate_served)
        return result, model

    def model_for(self, name: str, version: str):
        route = self.routes.get(name)
        model = route.version(version) if route is not None else None
        if model is None:
            raise self.not_served(name, version)
        return model

    def not_served(self, name: str, version: str) -> VersionNotServed:
        state = self.states.get(name)
        role = state.role(version) if state else None
        if role:
            return VersionNotServed(f"version {version} of {name!r} is {role}: only the stable and a gated candidate "
                                    f"are served (GET /v1/models/{name}/versions)")
        return VersionNotServed(f"unknown version {version!r} of {name!r} (GET /v1/models/{name}/versions lists them)")

    def versions(self, name: str) -> dict:
        """What GET /v1/models/<name>/versions shows."""
        state = self.states.get(name) or ReleaseState(name=name)
        route = self.routes.get(name)
        stable = route.stable.card.version if route else self.registry.get(name).card.version
        candidate = route.candidate.card.version if route and route.candidate else None
        rows = {}
        base = self.registry_base.get(name)
        for version in dict.fromkeys([stable, *(v for v in [base] if v), *state.versions]):
            info = state.versions.get(version, {})
            role = "stable" if version == stable else "candidate" if version == candidate else \
                info.get("role") if info.get("role") in ("refused", "retired") else "retired"
            rows[version] = {"version": version, "role": role, "served": version in (stable, candidate),
                             "gate": info.get("gate")}
        release = None
        if candidate:
            release = {"candidate": candidate, "mode": route.mode, "weight": route.weight,
                       "started_at": route.started_at, "policy": state.effective_policy().to_dict(),
                       "live": self.live.get(name)}
        return {"name": name, "stable": stable, "release": release, "versions": list(rows.values()),
                "decisions": dict(state.decisions), "history": state.history[-20:]}

    # --- lifecycle ---------------------------------------------------------------------------

    def sync(self) -> None:
        """Apply every name's state now (blocking; at start, before the server says ready)."""
        self.registry_base = {n: m.card.version for n, m in self.registry.models.items()}
        for name, model in self.registry.models.items():
            self._models[(name, model.card.version)] = model
        if self._comparer is None:
            self._comparer = Comparer(self.metrics)
        for name in self.registry.names:
            self._signatures[name] = record.file_signature(self.layout.state_file(name))
            self._apply(name)

    def start(self) -> None:
        threading.Thread(target=self._watch, name="release-watch", daemon=True).start()
        threading.Thread(target=self._judge, name="release-judge", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            for name in self.registry.names:
                signature = record.file_signature(self.layout.state_file(name))
                if signature != self._signatures.get(name):
                    self._signatures[name] = signature
                    try:
                        self._apply(name)
                    except Exception:
                        log.exception("applying the release state failed", extra={"fields": {"model": name}})

    def _apply(self, name: str) -> None:
        try:
            state = record.read(self.layout, name)
        except record.StateError as exc:
            log.error("release state unreadable; keeping the current route", extra={"fields": {"error": str(exc)}})
            return
        current = self.routes.get(name)
        stable_version = state.stable or self.registry_base[name]
        try:
            stable = self._model(name, stable_version)
        except ModelLoadError as exc:
            log.error("stable version not loadable; keeping the current one", extra={"fields": {
                "model": name, "version": stable_version, "error": str(exc)}})
            stable = current.stable if current else self.registry.get(name)
        candidate = None
        if state.candidate and state.mode:
            candidate = self._gated(name, state, stable)
        route = Route(name, stable, candidate, state.mode if candidate else None, state.weight if candidate else 0,
                      state.started_at if candidate else None)
        self.states[name] = state
        self.registry.models[name] = stable  # one assignment: GET /v1/models and /readyz follow stable
        self.routes[name] = route
        self.metrics.export_state(name, stable.card.version, candidate.card.version if candidate else None,
                                  route.weight, state.decisions)
        if not current or (current.stable, current.candidate) != (stable, candidate):
            log.info("release applied", extra={"fields": {
                "model": name, "stable": stable.card.version,
                "candidate": candidate.card.version if candidate else None,
                "mode": route.mode, "weight": route.weight}})
        self._retire_unused()

    def _gated(self, name: str, state: ReleaseState, stable: Model) -> Model | None:
        """The candidate, loaded and gated against ``stable``; None (and the refusal recorded) if it fails."""
        version = state.candidate
        key = (name, version, stable.card.version)
        result = self._gates.get(key)
        model = None
        try:
            model = self._model(name, version)
            if result is None:
                golden = self._golden_set(name)
                base = self._accuracy.get((name, stable.card.version))
                if base is None:
                    base = self._accuracy[(name, stable.card.version)] = gates.accuracy(stable, golden)
                result = gates.run(model, stable, golden, state.effective_policy(), stable_accuracy=base)
        except ModelLoadError as exc:
            result = gates.GateResult(False, f"cannot load: {exc}", {}, "load")
        self._gates[key] = result
        log.info("gate", extra={"fields": {"model": name, "version": version, **result.to_dict()}})
        if result.passed:
            return model
        if self.writable:
            with record.update(self.layout, name) as fresh:
                if fresh.candidate == version:
                    record.refuse(fresh, version, result.to_dict(), record.actor("gate"))
        return None

    def _model(self, name: str, version: str) -> Model:
        model = self._models.get((name, version))
        if model is None:
            model = load_model(store.model_dir(self.layout, name, version), name, batching=self.registry.batching)
            if model.card.version != version:
                raise ModelLoadError(f"{name} version folder {version} holds version {model.card.version}")
            model.warm_up()
            self._models[(name, version)] = model
        return model

    def _golden_set(self, name: str) -> goldens.GoldenSet:
        if name not in self._golden:
            self._golden[name] = goldens.load(self.layout.golden_file(name), name)
        return self._golden[name]

    def _retire_unused(self) -> None:
        """Close models no route uses any more, after RETIRE_AFTER (requests may still hold them)."""
        used = {id(m) for r in self.routes.values() for m in (r.stable, r.candidate) if m is not None}
        used |= {id(m) for m in self.registry.models.values()}
        for key, model in list(self._models.items()):
            if id(model) not in used and key[1] != self.registry_base.get(key[0]):
                del self._models[key]
                timer = threading.Timer(RETIRE_AFTER, model._batcher.close) if model._batcher else None
                if timer:
                    timer.daemon = True
                    timer.start()

    # --- the judge ---------------------------------------------------------------------------

    def _judge(self) -> None:
        while not self._stop.wait(1.0):
            for name, route in list(self.routes.items()):
                if route.candidate is None:
                    self.live.pop(name, None)
                    continue
                try:
                    self._judge_one(name, route)
                except Exception:
                    log.exception("judge failed", extra={"fields": {"model": name}})

    def _judge_one(self, name: str, route: Route) -> None:
        stable_v, cand_v = route.stable.card.version, route.candidate.card.version
        totals = self.metrics.figures(name, stable_v, cand_v)
        since = self._baselines.setdefault((name, route.started_at), (time.monotonic(), totals))
        figures = judge.summarise(totals, since[1], time.monotonic() - since[0])
        self.live[name] = figures
        state = self.states.get(name)
        policy = state.effective_policy() if state else Policy()
        if not policy.auto or not self.writable:
            return
        action, reason = judge.decide(figures, policy)
        if action is None:
            return
        with record.update(self.layout, name) as fresh:
            if fresh.candidate != cand_v or fresh.started_at != route.started_at:
                return  # someone else (another worker, the CLI) decided first
            apply = record.promote if action == "promote" else record.rollback
            apply(fresh, stable_v, record.actor("judge"), reason, figures)
        log.info("release judged", extra={"fields": {"model": name, "version": cand_v, "action": action,
                                                     "reason": reason, **figures}})


def client_key(headers) -> bytes | None:
    """The sticky-canary key: a client id or credential header, when the request carries one."""
    for header in CLIENT_HEADERS:
        value = headers.get(header)
        if value:
            return value.encode("utf-8", "replace")
    return None


def layout_for(config) -> Layout:
    return Layout.for_models_dir(config.model_dir, config.releases_dir, config.versions_dir, config.golden_dir)

