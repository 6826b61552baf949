"""``visionctl release``: ship a model version, start, promote and roll back releases, show them.

Local (``--models-dir``): the version is copied into the folder's versions store and the release
state file is changed under its lock (``backend.releases.record``); a running ``visionctl serve
--models-dir`` applies it within a second. Before a candidate is recorded, the same gate the
server runs is run here, so a refused candidate is reported at once (and recorded as refused);
the server gates it again before it takes any request.

Cluster (``--context``): see :mod:`visionctl.ops.cluster_releases`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.model.inference import load_model
from backend.releases import gate, golden, record, store
from backend.releases.policy import Policy
from backend.releases.record import Layout, ReleaseState


class ReleaseError(RuntimeError):
    """The release step cannot be done; the message says why and what to do."""


@dataclass
class Started:
    version: str
    stable: str
    gate: gate.GateResult
    entry: dict


def stable_version(layout: Layout, state: ReleaseState) -> str:
    version = state.stable or store.base_version(layout, state.name)
    if version is None:
        raise ReleaseError(f"no stable {state.name} model in {layout.models_dir} (need {state.name}.onnx + "
                           f"{state.name}.json there)")
    return version


def run_gate(layout: Layout, name: str, candidate_dir: Path, stable_dir: Path, policy: Policy) -> gate.GateResult:
    """The server's gate, run here on the candidate against the stable version."""
    candidate = load_model(candidate_dir, name, batching=False)
    stable = load_model(stable_dir, name, batching=False)
    return gate.run(candidate, stable, golden.load(layout.golden_file(name), name), policy)


def start(layout: Layout, name: str, artifact_dir: Path, mode: str, weight: int, policy: dict) -> Started:
    """Store the artifact as a version, gate it, and record it as candidate (or as refused)."""
    from backend.errors import ModelLoadError

    try:
        card = store.read_artifact(Path(artifact_dir), name)
        current = record.read(layout, name)
        if current.candidate is not None:
            raise ReleaseError(f"{name}: version {current.candidate} is already being released ({current.mode}); "
                               f"`visionctl release promote {name}` or `rollback {name}` first")
        stable = stable_version(layout, current)
        if card.version == stable:
            raise ReleaseError(f"{name}: version {card.version} is already stable")
        store.add(layout, name, Path(artifact_dir))
        result = run_gate(layout, name, layout.version_dir(name, card.version),
                          store.model_dir(layout, name, stable), Policy.from_dict(policy))
    except ModelLoadError as exc:
        raise ReleaseError(str(exc)) from None
    who = record.actor("visionctl")
    try:
        with record.update(layout, name) as state:
            if result.passed:
                entry = record.start(state, card.version, stable, mode, weight, policy, result.to_dict(), who)
            else:
                entry = record.refuse(state, card.version, result.to_dict(), who)
    except record.TransitionError as exc:
        raise ReleaseError(str(exc)) from None
    return Started(card.version, stable, result, entry)


def promote(layout: Layout, name: str, reason: str) -> dict:
    return _decide(layout, name, record.promote, reason)


def rollback(layout: Layout, name: str, reason: str) -> dict:
    return _decide(layout, name, record.rollback, reason)


def _decide(layout: Layout, name: str, transition, reason: str) -> dict:
    try:
        with record.update(layout, name) as state:
            return transition(state, stable_version(layout, state), record.actor("visionctl"), reason)
    except (record.TransitionError, record.StateError) as exc:
        raise ReleaseError(str(exc)) from None


def status(layout: Layout, name: str) -> dict:
    """The state as ``release status --json`` prints it (the file's content, stable resolved)."""
    try:
        state = record.read(layout, name)
    except record.StateError as exc:
        raise ReleaseError(str(exc)) from None
    out = state.to_dict()
    out["stable"] = stable_version(layout, state)
    out["policy"] = state.effective_policy().to_dict()
    out["stored_versions"] = store.versions(layout, name)
    return out
