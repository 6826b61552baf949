"""Per-client rate limits (the ``limits`` library), answered with JSON 429 + ``Retry-After``.

Who is a client: the API key when one is presented (keys are per consumer), else the peer address —
or, when the peer is a trusted proxy (``VISION_TRUSTED_PROXIES``: an ingress controller,
cloudflared), the address that proxy reports in ``X-Forwarded-For``. Untrusted peers cannot choose
their own identity by sending that header.

Two limits: ``VISION_RATE_LIMIT`` on API requests (off when empty) and ``VISION_AUTH_FAIL_LIMIT``
on requests with a missing or wrong key (stops key guessing at wire speed).

Across worker processes: the default ``memory://`` storage is per process, and the kernel spreads
connections over workers, so with N workers a client gets between 1× and N× the limit. For an exact
limit share a storage between them (``VISION_RATE_LIMIT_STORAGE=redis://host:6379``; ``limits``
supports Redis, Memcached, MongoDB).
"""

from __future__ import annotations

import ipaddress
import math
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from backend.contract import PROBE_PATHS, RATE_LIMITED
from backend.errors import ApiError

# Never limited: the kubelet's probes (tiny, and a limited probe would restart a healthy pod).
# Everything else — the open index, docs and OpenAPI pages included — counts against the limit.
EXEMPT_PATHS = PROBE_PATHS


class RateLimiter:
    def __init__(self, rate: str, auth_fail_rate: str, storage_uri: str, trusted_proxies: tuple[str, ...]):
        self.storage = storage_from_string(storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.rate = parse(rate) if rate else None
        self.auth_fail_rate = parse(auth_fail_rate) if auth_fail_rate else None
        self.trusted = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: the right-most X-Forwarded-For hop not added by a trusted proxy."""
        address = peer or "unknown"
        if not self.trusted or not forwarded_for:
            return address
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        while self._is_trusted(address) and hops:
            address = hops.pop()
        return address

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def check(self, identity: str, path: str, *, auth_failed: bool = False) -> None:
        """Count one request of ``identity``; raise a 429 :class:`ApiError` once over the limit."""
        if path in EXEMPT_PATHS:
            return
        item = self.auth_fail_rate if auth_failed else self.rate
        if item is None:
            return
        namespace = "auth-fail" if auth_failed else "api"
        if self.limiter.hit(item, namespace, identity):
            return
        reset = self.limiter.get_window_stats(item, namespace, identity).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        what = "requests with a missing or invalid API key" if auth_failed else "requests"
        raise ApiError(f"too many {what} from this client: the limit is {item} "
                       f"({'VISION_AUTH_FAIL_LIMIT' if auth_failed else 'VISION_RATE_LIMIT'}); retry in {retry} s",
                       code=RATE_LIMITED, headers={"Retry-After": str(retry)}, shed="rate_limited")
