"""The public URL of cloudflared's quick tunnel: from its metrics endpoint (``/quicktunnel``
through a port-forward), else from its log."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from visionctl.ops.deploy import Target
from visionctl.ops.runner import Runner, StepFailed
from visionctl.ops.smoke import port_forward

TUNNEL_METRICS_PORT = 2000  # cloudflared.metricsPort in the chart
TRYCLOUDFLARE_RE = re.compile(r"https://[a-z0-9-]+\.trycloudflare\.com")


def tunnel_url_from_logs(runner: Runner, target: Target) -> str | None:
    """The last ``https://*.trycloudflare.com`` URL in cloudflared's log, if any."""
    result = runner.query(target.kubectl("logs", f"deployment/{target.deployment('cloudflared')}", "--tail=500"))
    urls = TRYCLOUDFLARE_RE.findall(result.stdout + result.stderr) if result.ok else []
    return urls[-1] if urls else None


def tunnel_url_from_metrics(runner: Runner, target: Target, *, timeout: float = 15) -> str | None:
    """Read ``/quicktunnel`` (``{"hostname": ...}``) from cloudflared's metrics port through a
    short-lived port-forward; None while it has no hostname or cannot be reached."""
    import requests

    try:
        with port_forward(runner, target, f"deployment/{target.deployment('cloudflared')}", TUNNEL_METRICS_PORT,
                          timeout=timeout) as url:
            resp = requests.get(f"{url}/quicktunnel", timeout=2)
            hostname = (resp.json() or {}).get("hostname") if resp.ok else None
    except (StepFailed, requests.RequestException, ValueError, AttributeError):
        return None
    if not hostname:
        return None  # cloudflared answers but has no hostname yet
    return hostname if hostname.startswith("https://") else f"https://{hostname}"


def tunnel_url(runner: Runner, target: Target, *, timeout: float = 120, interval: float = 3,
               sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait up to ``timeout`` seconds for the quick tunnel's public URL (metrics endpoint first,
    then the log line), raising :class:`StepFailed` with what to check when it never appears."""
    deadline = time.monotonic() + timeout
    while True:
        url = tunnel_url_from_metrics(runner, target) or tunnel_url_from_logs(runner, target)
        if url:
            return url
        if time.monotonic() >= deadline:
            raise StepFailed("tunnel URL", f"no *.trycloudflare.com URL within {timeout:g}s",
                             hint="is the tunnel on (`visionctl up --tunnel`) and in quick mode? "
                                  "`visionctl logs cloudflared` shows its connection attempts; token mode "
                                  "uses the hostnames configured in the Cloudflare dashboard instead")
        sleep(interval)
