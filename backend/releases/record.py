"""The release state of one served name: where it lives, its format, and the one way to change it.

``<releases dir>/<name>.json`` (format in docs/releases.md)::

    {"name": "mnist", "stable": "2026.12.06-1a2b3c4d", "candidate": null, "mode": null, "weight": 0,
     "started_at": null, "policy": {...}, "previous": ["<former stables, newest last>"],
     "versions": {"<version>": {"role": "stable|candidate|retired|refused", "gate": {...}}},
     "decisions": {"start": 2, "promote": 1, ...}, "history": [{"at", "actor", "action", ...}]}

No file means: the base model of the models folder is stable and nothing is being released.
Writers (``visionctl release``, the gate and the judge in every serving process) change it only
through :func:`update`, which holds an exclusive ``flock`` on ``<name>.lock`` across read-modify-
write and replaces the file atomically, so readers see the old state or the new one, never half,
and two writers never lose each other's change. On a cluster the file is a ConfigMap key: the pod
reads it (read-only) and ``visionctl`` replaces the ConfigMap with the API server's optimistic
concurrency (resourceVersion) instead of the lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.errors import ModelLoadError
from backend.model.card import write_atomic
from backend.releases.policy import Policy

ROLES = ("stable", "candidate", "retired", "refused")
MODES = ("canary", "shadow")
ACTIONS = ("start", "refused", "promote", "rollback")
# models/golden of the checkout or of the image (/app/backend → /app/models/golden)
SHIPPED_GOLDEN_DIR = Path(__file__).resolve().parents[2] / "models" / "golden"
HISTORY_LIMIT = 500  # newest entries kept in the file; ``decisions`` keeps the all-time counts


class StateError(ModelLoadError):
    """The state file is unreadable or inconsistent; the message names it."""


@dataclass(frozen=True)
class Layout:
    """Where a models folder keeps its release side (each folder may be mounted elsewhere)."""

    models_dir: Path
    releases_dir: Path
    versions_dir: Path
    golden_dir: Path

    @classmethod
    def for_models_dir(cls, models_dir: str | os.PathLike, releases_dir=None, versions_dir=None,
                       golden_dir=None) -> Layout:
        base = Path(models_dir)
        return cls(base, Path(releases_dir or base / "releases"), Path(versions_dir or base / "versions"),
                   Path(golden_dir or base / "golden"))

    def state_file(self, name: str) -> Path:
        return self.releases_dir / f"{name}.json"

    def version_dir(self, name: str, version: str) -> Path:
        return self.versions_dir / name / version

    def golden_file(self, name: str) -> Path:
        """The name's golden set here, else the one shipped beside the code (repository or image)."""
        path = self.golden_dir / f"{name}.npz"
        return path if path.is_file() else SHIPPED_GOLDEN_DIR / f"{name}.npz"


@dataclass
class ReleaseState:
    name: str
    stable: str | None = None  # None: the base model of the models folder
    candidate: str | None = None
    mode: str | None = None
    weight: int = 0
    started_at: str | None = None
    policy: dict = field(default_factory=dict)
    previous: list[str] = field(default_factory=list)
    versions: dict[str, dict] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, source: str) -> ReleaseState:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise StateError(f"{source}: not a release state (a JSON object with a name)")
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        state = cls(**known)
        if state.mode is not None and state.mode not in MODES:
            raise StateError(f"{source}: mode must be one of {MODES}, not {state.mode!r}")
        if not isinstance(state.weight, int) or not 0 <= state.weight <= 100:
            raise StateError(f"{source}: weight must be an integer 0..100")
        Policy.from_dict(state.policy)  # refuses unknown keys
        return state

    def effective_policy(self) -> Policy:
        return Policy.from_dict(self.policy)

    def role(self, version: str) -> str | None:
        return (self.versions.get(version) or {}).get("role")

    def record(self, action: str, actor: str, reason: str, version: str | None, figures: dict | None = None,
               **extra) -> dict:
        """Append a decision to the history (and count it); returns the entry."""
        entry = {"at": now(), "actor": actor, "action": action, "version": version, "reason": reason,
                 "figures": figures or {}, **extra}
        self.history = [*self.history, entry][-HISTORY_LIMIT:]
        self.decisions[action] = self.decisions.get(action, 0) + 1
        return entry

    def set_role(self, version: str, role: str, **info) -> None:
        self.versions[version] = {**self.versions.get(version, {}), "role": role, **info}

    def clear_candidate(self) -> None:
        self.candidate, self.mode, self.weight, self.started_at, self.policy = None, None, 0, None, {}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def actor(kind: str) -> str:
    """Who acts: ``visionctl (user@host)``, ``judge (host pid N)``, ``gate (host pid N)``."""
    host = socket.gethostname()
    if kind == "visionctl":
        import getpass

        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return f"visionctl ({user}@{host})"
    return f"{kind} ({host} pid {os.getpid()})"


def parse(data: bytes, name: str, source: str) -> ReleaseState:
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise StateError(f"{source}: unreadable release state ({exc})") from None
    state = ReleaseState.from_dict(raw, source)
    if state.name != name:
        raise StateError(f"{source}: release state is for {state.name!r}, expected {name!r}")
    return state


def dumps(state: ReleaseState) -> bytes:
    return (json.dumps(state.to_dict(), indent=2) + "\n").encode()


def read(layout: Layout, name: str) -> ReleaseState:
    """The current state (a fresh one when the file does not exist yet)."""
    path = layout.state_file(name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ReleaseState(name=name)
    except OSError as exc:
        raise StateError(f"{path}: cannot read release state ({exc})") from None
    return parse(data, name, str(path))


def writable(layout: Layout) -> bool:
    """False where the state is a read-only mount (a ConfigMap in a pod): nothing there writes it."""
    return os.access(layout.releases_dir, os.W_OK) if layout.releases_dir.exists() else \
        os.access(layout.releases_dir.parent, os.W_OK)


@contextlib.contextmanager
def update(layout: Layout, name: str) -> Iterator[ReleaseState]:
    """Read-modify-write the state under an exclusive lock; written only if the block changed it."""
    layout.releases_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.releases_dir / f"{name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = read(layout, name)
            before = dumps(state)
            yield state
            after = dumps(state)
            if after != before:
                write_atomic(layout.state_file(name), after)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def file_signature(path: Path) -> tuple | None:
    """What changes when the file is replaced (an atomic rename or a ConfigMap symlink swap)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# --- transitions: the only ways the state changes (the CLI, the gate and the judge call these) ---

class TransitionError(ValueError):
    """The requested change does not apply to the current state (message says why)."""


def start(state: ReleaseState, version: str, stable_version: str, mode: str, weight: int, policy: dict,
          gate: dict, who: str) -> dict:
    if state.candidate is not None:
        raise TransitionError(f"{state.name}: version {state.candidate} is already being released "
                              f"({state.mode}); promote or roll it back first")
    if version == stable_version:
        raise TransitionError(f"{state.name}: version {version} is already stable")
    if mode not in MODES:
        raise TransitionError(f"mode must be one of {MODES}")
    if state.stable is None:
        state.stable = stable_version
        state.set_role(stable_version, "stable")
    state.candidate, state.mode, state.weight = version, mode, weight if mode == "canary" else 0
    state.started_at, state.policy = now(), dict(policy)
    state.set_role(version, "candidate", gate=gate)
    share = f"{state.weight}% of requests" if mode == "canary" else "a copy of live traffic"
    return state.record("start", who, f"{mode} release of {version} ({share}) over stable {stable_version}", version,
                        gate.get("figures"), mode=mode, weight=state.weight)


def refuse(state: ReleaseState, version: str, gate: dict, who: str) -> dict:
    if state.candidate == version:
        state.clear_candidate()
    state.set_role(version, "refused", gate=gate)
    return state.record("refused", who, gate.get("reason", "refused by the gate"), version, gate.get("figures"))


def promote(state: ReleaseState, stable_version: str, who: str, reason: str, figures: dict | None = None) -> dict:
    if state.candidate is None:
        raise TransitionError(f"{state.name}: nothing to promote (no candidate is being released)")
    version = state.candidate
    state.previous = [*state.previous, stable_version][-20:]
    state.set_role(stable_version, "retired")
    state.stable = version
    state.set_role(version, "stable")
    state.clear_candidate()
    return state.record("promote", who, reason, version, figures, replaced=stable_version)


def rollback(state: ReleaseState, stable_version: str, who: str, reason: str, figures: dict | None = None) -> dict:
    """Drop the candidate (stable keeps serving) or, with none, go back to the previous stable."""
    if state.candidate is not None:
        version = state.candidate
        state.set_role(version, "retired")
        state.clear_candidate()
        return state.record("rollback", who, reason, version, figures, stable=stable_version)
    if not state.previous:
        raise TransitionError(f"{state.name}: nothing to roll back (no candidate and no previous stable)")
    back = state.previous.pop()
    state.set_role(stable_version, "retired")
    state.stable = back
    state.set_role(back, "stable")
    return state.record("rollback", who, reason, stable_version, figures, stable=back)
