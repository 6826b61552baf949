"""API keys: which paths need one, how a client presents it, and the constant-time check.

Applied by the request policy (``backend.protection.policy``) in both the Flask app and the
Waitress-level guard (which refuses a keyless request before reading its body), so both decide alike.
"""

from __future__ import annotations

import hmac

from backend.contract import PROBE_PATHS

# Reachable without a key, each a deliberate choice (docs/ports.md): the probes (the kubelet carries
# none), the API description (it reveals nothing a client could not learn from an error) and the
# pages that tell a newcomer how to get started. All but the kubelet's probes are rate-limited like
# the API (backend.protection.ratelimit). Metrics are not on this port at all (backend.runtime.metrics_server).
OPEN_PATHS = frozenset({*PROBE_PATHS, "/openapi.json",
                        # the index and the docs page (the page sends the key itself via "Authorize"),
                        # and the Open Inference Protocol's health probes
                        "/", "/docs", "/v2/health/live", "/v2/health/ready"})
OPEN_PREFIXES = ("/docs/",)  # the docs page's static assets


def is_open(path: str) -> bool:
    """Paths served without an API key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def presented_key(header) -> str | None:
    """The key a client sent (``X-API-Key``, else ``Authorization: Bearer``); ``header(name)`` reads
    one request header, so Flask's request and Waitress's parser share this."""
    key = header("X-API-Key")
    if key:
        return key.strip()
    scheme, _, token = (header("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_is_valid(presented: str | None, keys: tuple[bytes, ...]) -> bool:
    """Constant-time check against every configured key (no early exit that would leak which or how
    many characters matched)."""
    if presented is None:
        return False
    candidate = presented.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(candidate, key)
    return ok
