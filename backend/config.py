"""Every backend setting, read from ``VISION_*`` environment variables and validated once at start.

Nothing else in the backend reads the environment: a typo'd or out-of-range value must stop the
process before it binds a port, with one message naming the variable, not surface later as a
confusing runtime error.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backend.contract import BACKEND_PORT, METRICS_PORT, MODEL_NAMES

MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A ``VISION_*`` variable has an invalid value; ``str()`` is the one-line message to show."""


@dataclass(frozen=True)
class Config:
    # Each setting's comment starts with what it means: scripts/configuration.py turns that first
    # sentence, the VISION_* name and the default into docs/configuration.md.

    # Bind address (`visionctl serve` binds 127.0.0.1 unless given --host or VISION_HOST).
    host: str = "0.0.0.0"
    # The API port.
    port: int = BACKEND_PORT
    # The port of /metrics, never served on the API port (backend.runtime.metrics_server); bound on the same
    # host, 0 = any free port (tests), the chosen one is in the start-up log.
    metrics_port: int = METRICS_PORT
    # Waitress worker threads per process.
    threads: int = 8
    # Server processes sharing the port, ~1 core each (backend.runtime.supervisor); metrics add up over all of
    # them. One process uses about one core (the GIL), so the default (VISION_WORKERS=auto) is one per
    # CPU this process may use: affinity and cgroup quota (`docker --cpus`, a pod's CPU limit), not the
    # host's core count (backend.cpus). A number overrides it.
    workers: int = 1
    # Folder with each model's `<name>.onnx` and its card `<name>.json`.
    model_dir: Path = Path("models")
    # Models to load, comma-separated.
    models: tuple[str, ...] = MODEL_NAMES
    # Request body limit in bytes (413 above).
    max_body_bytes: int = 10 * 1024 * 1024
    # Width × height limit per image, checked from the image header before decoding (413 above).
    max_pixels: int = 16_000_000
    # Instances per batch request (413 above).
    max_batch: int = 64
    # Open connections per process. Connection safety (backend.protection.guard): each open socket costs a file
    # descriptor and a few KiB, not a thread, so admit many and bound them by time.
    max_connections: int = 1000
    # Seconds within which a request must arrive completely after its first byte (408 after).
    read_timeout: float = 10.0
    # Seconds after which an idle keep-alive connection is closed.
    idle_timeout: float = 15.0
    # Complete requests waiting for a thread; more get an immediate 503 + Retry-After (probes and
    # /metrics exempt).
    max_queue: int = 64
    # Seconds a request may spend being processed; checked between the images of a batch, which
    # also stop once the client has hung up (decoding one image is bounded by the pixel limits).
    request_deadline: float = 5.0
    # Memory in MiB for images being decoded at once, per process (backend.protection.budget). Budget math for
    # the chart's 512 MiB pod limit: ~130 MiB baseline (Python, Flask, ORT, two models) + 192 MiB of
    # decoding + transient body buffers (threads × max_body_bytes in the worst case, 8 × 10 MiB)
    # ≈ 400 MiB. One 16 MP RGBA image needs 16 M × (4 + 8) B = 192 MiB: it fits, alone.
    decode_memory_mb: int = 192
    # Decoded pixels per request, all images of a batch together (413 above). It bounds a batch's CPU
    # (~1 s at 16 MP) as VISION_MAX_PIXELS bounds one image's.
    max_batch_pixels: int = 16_000_000
    # Seconds an image waits for room in the decoding memory before a 503 + Retry-After.
    decode_wait: float = 5.0
    # Bytes (MiB) of request bodies spooled to $TMPDIR at once. Bodies over Waitress's 512 KiB
    # in-memory buffer are spooled; in the pod $TMPDIR is a 64 MiB memory-backed emptyDir, so bodies
    # reserve their bytes from this budget before they are written (backend.protection.admission) and /tmp never
    # fills up; over it, 503 + Retry-After.
    spool_mb: int = 48
    # Explanations running at once (each costs ~25× a prediction's CPU; backend.protection.admission).
    explain_concurrency: int = 1
    # Explanations waiting for a turn; beyond that, 503 + Retry-After.
    explain_queue: int = 2
    # Share of one CPU explanations may use on average; beyond that, 503 + Retry-After.
    explain_cpu_share: float = 0.25
    # Per-client limit on API requests, e.g. `100/second;2000/minute`; empty = off (429 + Retry-After).
    rate_limit: str = ""
    # Per-client limit on requests with a wrong or missing API key (429 + Retry-After).
    auth_fail_limit: str = "20/minute"
    # Where the limiters count: per process by default, `redis://…` shares one limit across processes
    # and pods.
    rate_limit_storage: str = "memory://"
    # Comma-separated CIDRs whose X-Forwarded-For names the client (for rate limits and logs).
    trusted_proxies: tuple[str, ...] = ()
    # Comma-separated API keys, 16+ characters each; empty = no auth (health and metrics stay open).
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never print secrets
    # Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    log_level: str = "INFO"
    # Seconds to keep serving after SIGTERM while /readyz already says 503, so Kubernetes can take
    # the pod out of its Service endpoints before the listening socket closes (0 = close at once).
    drain_delay: float = 0.0
    # Upper bound in seconds on waiting for in-flight requests during shutdown (below the pod's grace
    # period).
    shutdown_timeout: float = 20.0
    # Folder of the model release state files (backend.releases); default releases/ in model_dir. A
    # cluster mounts it from a ConfigMap.
    releases_dir: Path | None = None
    # Folder of the versions store, one folder per name and version; default versions/ in model_dir. A
    # cluster fills it from the model image by an init container.
    versions_dir: Path | None = None
    # Folder of each served name's golden set, the release gate's test; default golden/ in model_dir.
    golden_dir: Path | None = None
    # Seconds between checks of the release state files.
    release_poll: float = 0.5
    # Coalesce concurrent requests into one ONNX Runtime run (see backend.model.inference.Batcher).
    batching: bool = True
    # Abstain on out-of-distribution images by default: "label": null and a reason instead of a guessed
    # class (strict mode; a request's `strict` field or `?strict=` overrides it).
    ood_strict: bool = False
    # Internal, set by backend.runtime.supervisor for its workers: the inherited listening socket's fd.
    listen_fd: int | None = None
    # Internal, set by backend.runtime.supervisor for its workers: the worker's number (1..workers, in its logs).
    worker_id: int = 0
    # Internal, set by backend.runtime.supervisor for its workers: its pid (a worker compares its parent with
    # it, so a supervisor that dies before the worker first looks is still noticed).
    supervisor_pid: int | None = None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Parse and validate the environment (``os.environ`` by default); raises :class:`ConfigError`."""
        env = os.environ if environ is None else environ
        d = cls()

        def get(name: str) -> str | None:
            value = env.get(name)
            return None if value is None or value.strip() == "" else value.strip()

        def integer(name: str, default: int, lo: int, hi: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw, 10)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not an integer (expected {lo}..{hi})") from None
            if not lo <= value <= hi:
                raise ConfigError(f"{name}={value} is out of range (expected {lo}..{hi})")
            return value

        def number(name: str, default: float, lo: float, hi: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number (expected {lo}..{hi})") from None
            if not lo <= value <= hi:  # also rejects nan
                raise ConfigError(f"{name}={value} is out of range (expected {lo}..{hi})")
            return value

        host = get("VISION_HOST") or d.host
        if host != "localhost":
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ConfigError(f"VISION_HOST={host!r} is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)") from None

        model_dir = Path(get("VISION_MODEL_DIR") or d.model_dir)
        if not model_dir.is_dir():
            raise ConfigError(f"VISION_MODEL_DIR={str(model_dir)!r} is not a directory")

        raw_models = get("VISION_MODELS")
        models = d.models
        if raw_models is not None:
            models = tuple(dict.fromkeys(m.strip() for m in raw_models.split(",") if m.strip()))
            if not models:
                raise ConfigError("VISION_MODELS is empty (expected e.g. mnist,fashion-mnist)")
            bad = [m for m in models if not MODEL_NAME_RE.match(m)]
            if bad:
                raise ConfigError(f"VISION_MODELS has invalid model name(s): {', '.join(map(repr, bad))}")

        raw_keys = env.get("VISION_API_KEYS", "")
        keys = tuple(dict.fromkeys(k.strip() for k in raw_keys.split(",") if k.strip()))
        short = [k for k in keys if len(k) < 16]
        if short:
            raise ConfigError(f"VISION_API_KEYS: {len(short)} key(s) shorter than 16 characters; use long random keys")
        if any(not k.isprintable() or " " in k for k in keys):
            raise ConfigError("VISION_API_KEYS: keys must be printable and contain no spaces")

        level = (get("VISION_LOG_LEVEL") or d.log_level).upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"VISION_LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}")

        def workers() -> int:
            raw = (get("VISION_WORKERS") or "auto").lower()
            if raw != "auto":
                if not raw.isdigit():
                    raise ConfigError(f"VISION_WORKERS={raw!r} is neither 'auto' nor an integer (expected 1..64)")
                return integer("VISION_WORKERS", d.workers, 1, 64)
            from backend.cpus import usable_cpus

            return min(usable_cpus(), 64)

        raw_batching = (get("VISION_BATCHING") or "1").lower()
        if raw_batching not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(f"VISION_BATCHING={raw_batching!r} is not a boolean (1/0, true/false)")
        raw_strict = (get("VISION_OOD_STRICT") or "0").lower()
        if raw_strict not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(f"VISION_OOD_STRICT={raw_strict!r} is not a boolean (1/0, true/false)")

        def rate(name: str, default: str) -> str:
            raw = env.get(name)
            value = default if raw is None else raw.strip()
            if value:
                from limits import parse_many

                try:
                    parse_many(value)
                except ValueError:
                    raise ConfigError(f"{name}={value!r} is not a rate limit (e.g. 100/second;2000/minute, "
                                      "or empty for none)") from None
            return value

        proxies = tuple(p.strip() for p in (get("VISION_TRUSTED_PROXIES") or "").split(",") if p.strip())
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(f"VISION_TRUSTED_PROXIES: {proxy!r} is not an address or CIDR range") from None

        port = integer("VISION_PORT", d.port, 1, 65535)
        metrics_port = integer("VISION_METRICS_PORT", d.metrics_port, 0, 65535)
        if metrics_port == port:
            raise ConfigError(f"VISION_METRICS_PORT={metrics_port} is the API port (VISION_PORT); "
                              "metrics need a port of their own")
        max_body_bytes = integer("VISION_MAX_BODY_BYTES", d.max_body_bytes, 1024, 1024**3)
        spool_mb = integer("VISION_SPOOL_MB", d.spool_mb, 1, 65536)
        if spool_mb * 2**20 < max_body_bytes:  # a body the budget can never hold would get 503s forever
            raise ConfigError(f"VISION_SPOOL_MB={spool_mb} is smaller than VISION_MAX_BODY_BYTES={max_body_bytes}; "
                              "the spool budget must hold at least one body of the maximum size")

        return cls(
            host=host,
            rate_limit=rate("VISION_RATE_LIMIT", d.rate_limit),
            auth_fail_limit=rate("VISION_AUTH_FAIL_LIMIT", d.auth_fail_limit),
            rate_limit_storage=get("VISION_RATE_LIMIT_STORAGE") or d.rate_limit_storage,
            trusted_proxies=proxies,
            port=port,
            metrics_port=metrics_port,
            threads=integer("VISION_THREADS", d.threads, 1, 256),
            workers=workers(),
            model_dir=model_dir,
            models=models,
            max_body_bytes=max_body_bytes,
            max_pixels=integer("VISION_MAX_PIXELS", d.max_pixels, 28 * 28, 1_000_000_000),
            max_batch=integer("VISION_MAX_BATCH", d.max_batch, 1, 4096),
            max_connections=integer("VISION_MAX_CONNECTIONS", d.max_connections, 16, 100_000),
            read_timeout=number("VISION_READ_TIMEOUT", d.read_timeout, 0.5, 3600.0),
            idle_timeout=number("VISION_IDLE_TIMEOUT", d.idle_timeout, 0.5, 3600.0),
            request_deadline=number("VISION_REQUEST_DEADLINE", d.request_deadline, 0.01, 3600.0),
            max_queue=integer("VISION_MAX_QUEUE", d.max_queue, 1, 100_000),
            max_batch_pixels=integer("VISION_MAX_BATCH_PIXELS", d.max_batch_pixels, 28 * 28, 1_000_000_000),
            decode_memory_mb=integer("VISION_DECODE_MEMORY_MB", d.decode_memory_mb, 16, 65536),
            decode_wait=number("VISION_DECODE_WAIT", d.decode_wait, 0.0, 300.0),
            spool_mb=spool_mb,
            explain_concurrency=integer("VISION_EXPLAIN_CONCURRENCY", d.explain_concurrency, 1, 256),
            explain_queue=integer("VISION_EXPLAIN_QUEUE", d.explain_queue, 0, 1024),
            explain_cpu_share=number("VISION_EXPLAIN_CPU_SHARE", d.explain_cpu_share, 0.01, 64.0),
            api_keys=keys,
            log_level=level,
            drain_delay=number("VISION_DRAIN_DELAY", d.drain_delay, 0.0, 300.0),
            shutdown_timeout=number("VISION_SHUTDOWN_TIMEOUT", d.shutdown_timeout, 0.1, 3600.0),
            releases_dir=Path(get("VISION_RELEASES_DIR")) if get("VISION_RELEASES_DIR") else None,
            versions_dir=Path(get("VISION_VERSIONS_DIR")) if get("VISION_VERSIONS_DIR") else None,
            golden_dir=Path(get("VISION_GOLDEN_DIR")) if get("VISION_GOLDEN_DIR") else None,
            release_poll=number("VISION_RELEASE_POLL", d.release_poll, 0.05, 60.0),
            batching=raw_batching in ("1", "true", "yes", "on"),
            ood_strict=raw_strict in ("1", "true", "yes", "on"),
            listen_fd=integer("VISION_LISTEN_FD", -1, 0, 65535) if get("VISION_LISTEN_FD") else None,
            worker_id=integer("VISION_WORKER_ID", 0, 0, 64),
            supervisor_pid=(integer("VISION_SUPERVISOR_PID", 1, 1, 2**22)
                            if get("VISION_SUPERVISOR_PID") else None),
        )

    @property
    def log_level_number(self) -> int:
        return logging.getLevelName(self.log_level)
