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

from backend.contract import BACKEND_PORT, MODEL_NAMES

MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A ``VISION_*`` variable has an invalid value; ``str()`` is the one-line message to show."""


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = BACKEND_PORT
    threads: int = 8
    # Server processes sharing the port (backend.supervisor). One process uses about one core (the
    # GIL), so the default (VISION_WORKERS=auto) is one per CPU this process may use: affinity and
    # cgroup quota, not the host's core count (backend.cpus). A number overrides it.
    workers: int = 1
    model_dir: Path = Path("models")
    models: tuple[str, ...] = MODEL_NAMES
    max_body_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 16_000_000
    max_batch: int = 64
    # Connection safety (backend.guard). Each open socket costs a file descriptor and a few KiB, not
    # a thread, so admit many and bound them by time: a request must arrive completely within
    # read_timeout seconds of its first byte, an idle keep-alive connection closes after
    # idle_timeout. At most max_queue complete requests wait for a thread; more get a 503 at once.
    max_connections: int = 1000
    read_timeout: float = 10.0
    idle_timeout: float = 15.0
    max_queue: int = 64
    # Seconds a request may spend being processed; checked between the images of a batch, which
    # also stop once the client has hung up (decoding one image is bounded by the pixel limits).
    request_deadline: float = 5.0
    # Memory for images being decoded at once, per process (backend.budget). Budget math for the
    # chart's 512 MiB pod limit: ~130 MiB baseline (Python, Flask, ORT, two models) + 192 MiB of
    # decoding + transient body buffers (threads × max_body_bytes in the worst case, 8 × 10 MiB)
    # ≈ 400 MiB. One 16 MP RGBA image needs 16 M × (4 + 8) B = 192 MiB: it fits, alone.
    decode_memory_mb: int = 192
    # Decoded pixels per request, all images of a batch together: bounds a batch's CPU (~1 s at
    # 16 MP) as VISION_MAX_PIXELS bounds one image's.
    max_batch_pixels: int = 16_000_000
    decode_wait: float = 5.0
    # Per-client limits (backend.ratelimit): "100/second;2000/minute" syntax, "" = off.
    rate_limit: str = ""
    auth_fail_limit: str = "20/minute"
    rate_limit_storage: str = "memory://"
    trusted_proxies: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never print secrets
    log_level: str = "INFO"
    # Seconds to keep serving after SIGTERM while /readyz already says 503, so Kubernetes can take
    # the pod out of its Service endpoints before the listening socket closes (0 = close at once).
    drain_delay: float = 0.0
    # Upper bound on waiting for in-flight requests during shutdown (below the pod's grace period).
    shutdown_timeout: float = 20.0
    # Coalesce concurrent requests into one ONNX Runtime run (see backend.inference.Batcher).
    batching: bool = True
    # Abstain on out-of-distribution images by default: "label": null and a reason instead of a guessed
    # class (strict mode; a request's `strict` field or `?strict=` overrides it).
    ood_strict: bool = False
    # Internal, set by backend.supervisor for its workers: the inherited listening socket's fd and
    # the worker's number (1..workers, shown in its log lines).
    listen_fd: int | None = None
    worker_id: int = 0

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

        return cls(
            host=host,
            rate_limit=rate("VISION_RATE_LIMIT", d.rate_limit),
            auth_fail_limit=rate("VISION_AUTH_FAIL_LIMIT", d.auth_fail_limit),
            rate_limit_storage=get("VISION_RATE_LIMIT_STORAGE") or d.rate_limit_storage,
            trusted_proxies=proxies,
            port=integer("VISION_PORT", d.port, 1, 65535),
            threads=integer("VISION_THREADS", d.threads, 1, 256),
            workers=workers(),
            model_dir=model_dir,
            models=models,
            max_body_bytes=integer("VISION_MAX_BODY_BYTES", d.max_body_bytes, 1024, 1024**3),
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
            api_keys=keys,
            log_level=level,
            drain_delay=number("VISION_DRAIN_DELAY", d.drain_delay, 0.0, 300.0),
            shutdown_timeout=number("VISION_SHUTDOWN_TIMEOUT", d.shutdown_timeout, 0.1, 3600.0),
            batching=raw_batching in ("1", "true", "yes", "on"),
            ood_strict=raw_strict in ("1", "true", "yes", "on"),
            listen_fd=integer("VISION_LISTEN_FD", -1, 0, 65535) if get("VISION_LISTEN_FD") else None,
            worker_id=integer("VISION_WORKER_ID", 0, 0, 64),
        )

    @property
    def log_level_number(self) -> int:
        return logging.getLevelName(self.log_level)
