"""The release policy: gate thresholds (before traffic) and judge thresholds (on live traffic).

Defaults live here once; a release may override any of them (``visionctl release start --policy
key=value``), and the values in force travel in the release state file so every serving process
and replica judges one release by the same rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


class PolicyError(ValueError):
    """An unknown policy key or a value out of range."""


@dataclass(frozen=True)
class Policy:
    # Gate: golden-set accuracy must be >= stable's accuracy - max_accuracy_drop (0.005 = 0.5 point).
    max_accuracy_drop: float = 0.005
    # Gate: median single-image latency <= latency_factor x stable's + latency_slack_ms.
    latency_factor: float = 2.0
    latency_slack_ms: float = 1.0
    # Gate (models with an ood output): share of golden images called out-of-distribution may grow
    # by at most this much over stable's (or over the card's own target when stable has no score).
    max_ood_increase: float = 0.02
    # Judge: promote/rollback on its own (False: only `visionctl release promote/rollback`).
    auto: bool = True
    # Judge: promotion needs this many compared requests, this long, and this agreement with stable.
    min_requests: int = 200
    min_seconds: float = 30.0
    promote_agreement: float = 0.98
    # Judge: a breach (any one, once breach_min_requests were compared) rolls back at once.
    breach_min_requests: int = 100
    rollback_agreement: float = 0.95
    max_error_rate: float = 0.01
    max_latency_ratio: float = 3.0
    max_ood_share_increase: float = 0.10

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict | None) -> Policy:
        """A policy from (a subset of) its fields; unknown keys and bad values raise PolicyError."""
        return cls().with_values(raw or {})

    def with_values(self, values: dict) -> Policy:
        known = {f.name: f.type for f in fields(self)}
        parsed = {}
        for key, value in values.items():
            if key not in known:
                raise PolicyError(f"unknown policy key {key!r}; known: {', '.join(known)}")
            parsed[key] = _coerce(key, known[key], value)
        return replace(self, **parsed)


def _coerce(key: str, kind: str, value):
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        number = int(value) if kind == "int" else float(value)
    except (TypeError, ValueError):
        raise PolicyError(f"policy {key}={value!r} is not a {kind}") from None
    if not number >= 0:  # also refuses nan
        raise PolicyError(f"policy {key}={value!r} must be >= 0")
    if key.endswith("agreement") and number > 1:
        raise PolicyError(f"policy {key}={value!r} is a share: 0..1")
    return number


def parse_assignments(items: list[str]) -> dict:
    """``["min_requests=100", "auto=false"]`` → ``{"min_requests": 100, "auto": False}`` (checked)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PolicyError(f"policy setting {item!r} is not key=value")
        out[key.strip()] = value.strip()
    policy = Policy().with_values(out)
    return {key: getattr(policy, key) for key in out}
