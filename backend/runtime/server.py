"""Waitress entry point: validated config, background model loading, graceful SIGTERM drain.

Shutdown sequence on SIGTERM/SIGINT (what a Kubernetes rolling update needs to drop nothing):

1. ``/readyz`` turns 503 and every response carries ``Connection: close``, so keep-alive clients
   reconnect — to another pod — instead of reusing this connection;
2. after ``VISION_DRAIN_DELAY`` seconds (time for the endpoint to leave the Service), connections
   already queued in the kernel backlog are accepted, then the listening socket is closed;
3. requests in flight (being received, queued, processed or written) finish, bounded by
   ``VISION_SHUTDOWN_TIMEOUT``, and after a short quiet period the remaining idle connections close;
4. the process exits 0. A second signal exits at once with status 1.

Waitress's own ``close()`` cancels queued requests, hence this module drives the drain itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import warnings

from PIL import Image
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import WSGITask

from backend.config import Config
from backend.errors import ModelLoadError
from backend.logs import configure_logging
from backend.protection.guard import Guard, guarded_channel
from backend.protection.guard import install as install_guard
from backend.runtime import waitress_pin
from backend.runtime.metrics_server import MetricsServer
from backend.runtime.signals import SignalWatcher
from backend.runtime.supervisor import supervise
from backend.web.app import create_app

log = logging.getLogger("backend.server")

QUIET_PERIOD = 0.1  # seconds without any activity before idle connections are closed
POLL = 0.01


class _DrainAwareTask(WSGITask):
    """Adds ``Connection: close`` to responses while draining (a WSGI app may not set it itself)."""

    def build_response_header(self):
        if self.channel.server.draining.is_set():
            self.set_close_on_finish()
        return super().build_response_header()


class _Channel(HTTPChannel):
    task_class = _DrainAwareTask


class _Stop:
    """What SIGTERM/SIGINT do (on the signal thread): the first starts the graceful drain — once
    the server exists, if it comes earlier — and a second exits at once with status 1."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._signal: int | None = None

    def __call__(self, signum: int) -> None:
        with self._lock:
            if self._signal is not None:
                log.warning("second signal: exiting immediately", extra={"fields": {"signal": signum}})
                sys.stdout.flush()
                os._exit(1)
            self._signal = signum
            server = self._server
        if server is not None:
            server.shutdown(reason=signal.Signals(signum).name)

    def attach(self, server: Server) -> None:
        with self._lock:
            self._server = server
            signum = self._signal
        if signum is not None:
            server.shutdown(reason=signal.Signals(signum).name)


class Server:
    """The app on a Waitress server bound at construction (so a busy port fails immediately)."""

    def __init__(self, config: Config):
        waitress_pin.require()  # the subclasses and patches below fit one Waitress release only
        self.config = config
        self.app = create_app(config)
        self.state = self.app.extensions["vision"]
        self.map: dict = {}
        self.failure: BaseException | None = None
        self._shutdown_started = threading.Event()
        if config.listen_fd is not None:  # a supervisor's worker: serve the socket it bound
            where = {"sockets": [socket.socket(fileno=config.listen_fd)]}
        else:
            where = {"host": config.host, "port": config.port}
        self.waitress = create_server(
            self.app, map=self.map, threads=config.threads, **where,
            ident="vision-ai",
            asyncore_use_poll=True,          # select() breaks above 1024 file descriptors
            # Stalled or slow sockets cost a file descriptor, not a thread: admit many, cut them off
            # by time (backend.protection.guard), so a flood of half-open requests cannot lock out probes.
            connection_limit=config.max_connections,
            channel_timeout=config.idle_timeout,  # idle keep-alive connections
            cleanup_interval=1,                   # how often the slow-client deadline is checked
            # Keep X-Forwarded-For: backend.protection.ratelimit trusts it only from VISION_TRUSTED_PROXIES (CIDRs,
            # which Waitress's single trusted_proxy address cannot express for ingress pods).
            clear_untrusted_proxy_headers=False,
            # Waitress watches the socket while the app runs, so a batch can stop when the client left
            # (a client that half-closes its side after sending counts as gone, as in most servers).
            channel_request_lookahead=1,
            # Waitress answers bodies over its limit with a plain-text 413 before reading them.
            # Keep its limit above ours so ordinary oversize requests get the JSON 413 from the app,
            # while a gigabyte upload is still refused without being buffered to disk.
            max_request_body_size=max(2 * config.max_body_bytes, config.max_body_bytes + 2**20),
        )
        guard = Guard(self.state, self.app)
        self.waitress.channel_class = guarded_channel(_Channel, guard)
        install_guard(self.waitress, guard)
        self.waitress.draining = self.state.draining
        dispatcher = self.waitress.task_dispatcher
        self.state.metrics.track(self.state.metrics.queue_depth, lambda: len(dispatcher.queue))
        # The operator plane: /metrics on its own port. A supervisor's worker serves none (the
        # supervisor serves the workers' sum), so N workers never clash over it.
        self.metrics_server: MetricsServer | None = None
        if config.listen_fd is None:
            try:
                self.metrics_server = MetricsServer(config.host, config.metrics_port, self.state.metrics.render)
            except OSError:
                self.waitress.close()
                raise

    @property
    def port(self) -> int:
        return int(self.waitress.effective_port)

    def run(self) -> None:
        """Serve until shut down (blocking). Raises the model-load error if loading failed.

        Stopped before it ran (a signal while it started), it loads no model and serves only the drain."""
        stopped = self._shutdown_started.is_set()
        if self.config.listen_fd is None:
            # /healthz answers and /readyz says 503 while the models load in the background.
            if not stopped:
                threading.Thread(target=self._load_models, name="model-loader", daemon=True).start()
        else:
            # A worker accepts nothing before its models are ready: connections the kernel hands to
            # its socket wait in the backlog for a moment instead of getting 503s while a sibling
            # worker already answers /readyz with 200.
            # The supervisor's pid as it told us: it may have died before this line ran.
            supervisor = self.config.supervisor_pid or os.getppid()
            if not stopped:
                self._load()
            threading.Thread(target=self._watch_supervisor, args=(supervisor,), name="supervisor-watch",
                             daemon=True).start()
        if self.metrics_server is not None:
            self.metrics_server.start()
        fields = {"url": f"http://{self.config.host}:{self.port}", "threads": self.config.threads,
                  "models": list(self.config.models), "model_dir": str(self.config.model_dir),
                  "auth": self.config.auth_enabled, "max_body_bytes": self.config.max_body_bytes,
                  "max_pixels": self.config.max_pixels, "max_batch": self.config.max_batch}
        if self.metrics_server is not None:
            fields["metrics_url"] = self.metrics_server.url
        log.info("listening", extra={"fields": fields})
        self.waitress.run()  # returns once every channel in the map is closed
        self.waitress.task_dispatcher.shutdown(cancel_pending=False, timeout=self.config.shutdown_timeout)
        if self.metrics_server is not None:  # scraped until the end: the last scrape sees vision_ready 0
            self.metrics_server.close()
        if self.failure is not None:
            raise self.failure
        log.info("stopped")

    def _load(self) -> None:
        """Load and warm up the models; any failure becomes a logged :class:`ModelLoadError`."""
        try:
            self.state.load_models()
        except BaseException as exc:
            error = exc if isinstance(exc, ModelLoadError) else ModelLoadError(f"model loading failed: {exc!r}")
            self.state.registry.error = str(error)
            log.error("model loading failed", extra={"fields": {"error": str(error)}})
            raise error from None
        log.info("ready", extra={"fields": {"models": {n: m.card.version for n, m in
                                                       self.state.registry.models.items()}}})

    def _load_models(self) -> None:
        try:
            self._load()
        except ModelLoadError as exc:  # any failure must end the process, not leave it unready forever
            self.failure = exc
            self.shutdown(reason="model loading failed", delay=0.0)

    def _watch_supervisor(self, supervisor_pid: int) -> None:
        """A worker whose supervisor died (SIGKILL, OOM) drains and exits instead of lingering."""
        while not self._shutdown_started.is_set():
            if os.getppid() != supervisor_pid:
                self.shutdown(reason="supervisor exited")
                return
            time.sleep(1.0)

    def shutdown(self, reason: str = "requested", delay: float | None = None) -> None:
        """Start the graceful drain (returns at once; ``run()`` returns when it is done)."""
        if self._shutdown_started.is_set():
            return
        self._shutdown_started.set()
        self.state.start_draining()
        threading.Thread(target=self._drain, args=(reason, self.config.drain_delay if delay is None else delay),
                         name="drain", daemon=True).start()

    # -- drain, runs in its own thread; socket work is handed to the event-loop thread ----------

    def _in_loop(self, fn) -> None:
        done = threading.Event()

        def thunk():
            try:
                fn()
            finally:
                done.set()

        self.waitress.trigger.pull_trigger(thunk)
        done.wait(5.0)

    def _stop_accepting(self) -> None:
        srv = self.waitress
        _drop_new_connections(srv.socket)
        for _ in range(10_000):  # take over connections the kernel already completed (backlog)
            before = len(self.map)
            srv.handle_accept()
            if len(self.map) == before:
                break
        srv.accepting = False
        wasyncore.dispatcher.close(srv)  # not srv.close(): that would also close the loop's trigger

    def _busy(self) -> bool:
        dispatcher = self.waitress.task_dispatcher
        if dispatcher.queue or dispatcher.active_count:
            return True
        for ch in list(self.map.values()):
            if isinstance(ch, HTTPChannel) and (ch.requests or ch.request is not None or ch.total_outbufs_len):
                return True
        return False

    def _drain(self, reason: str, delay: float) -> None:
        log.info("draining", extra={"fields": {"reason": reason, "drain_delay": delay}})
        if delay > 0:
            time.sleep(delay)
        self._in_loop(self._stop_accepting)
        deadline = time.monotonic() + self.config.shutdown_timeout
        quiet_since = None
        while time.monotonic() < deadline:
            if self._busy():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_PERIOD:
                break
            time.sleep(POLL)
        else:
            log.warning("shutdown timeout: closing connections with requests still in flight",
                        extra={"fields": {"timeout": self.config.shutdown_timeout}})
        self._in_loop(lambda: wasyncore.close_all(self.map, ignore_all=True))


SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux; Python does not export it


def _drop_new_connections(sock: socket.socket) -> None:
    """Stop the kernel completing new connections on this listening socket (Linux; best effort).

    Closing a listening socket resets every connection still in its accept queue, and a client may
    already have sent its request on one. Emptying the queue first leaves a race: a handshake that
    completes between the last accept() and close() is reset. A one-instruction BPF filter
    ("drop") on the listener stops new handshakes from completing, so the queue can be emptied
    for good; a client whose SYN was dropped retries after ~1 s and finds the port closed.
    """
    drop = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, return 0 bytes = drop the packet
    program = ctypes.create_string_buffer(drop)
    fprog = struct.pack("HL", 1, ctypes.addressof(program))  # struct sock_fprog {len; *filter}
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as exc:  # not Linux, or filters not permitted: fall back to the plain close
        log.debug("cannot attach the drain filter", extra={"fields": {"error": str(exc)}})


def _return_freed_memory_to_the_os() -> None:
    """Make glibc give big freed buffers back, so RSS falls to baseline after a burst of images.

    glibc raises its mmap threshold after a large block is freed (up to 32 MiB), after which decoded
    images land on the heap, which it rarely shrinks: RSS then stays at the peak of the last burst.
    A fixed threshold keeps every image-sized buffer an mmap that is unmapped when freed, and few
    arenas stop eight threads from each keeping their own high-water mark.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    libc.mallopt(m_mmap_threshold, 256 * 1024)
    libc.mallopt(m_trim_threshold, 1024 * 1024)
    libc.mallopt(m_arena_max, 2)


def _raise_fd_limit(wanted: int) -> None:
    """Lift the soft open-files limit towards ``wanted`` (containers often start at 1024)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def serve(config: Config | None = None, install_signals: bool | None = None) -> None:
    """Run the backend until SIGTERM/SIGINT (blocking). Library entry used by ``visionctl serve``.

    Raises :class:`ConfigError` for bad ``VISION_*`` values, :class:`ModelLoadError` when a model
    cannot be loaded, :class:`OSError` when the port cannot be bound and, with ``VISION_WORKERS`` > 1,
    :class:`~backend.errors.WorkerError` when a worker fails.
    """
    config = config or Config.from_env()
    configure_logging(config.log_level, worker=config.worker_id or None)
    if config.workers > 1 and config.listen_fd is None:
        supervise(config)
        return
    # Waitress logs a WARNING for every request that has to queue — thousands of lines per second
    # at high concurrency, costing CPU exactly when it is scarce. vision_http_queue_depth shows it.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # Our own VISION_MAX_PIXELS check is what limits decoded size; Pillow's warning is noise.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    _raise_fd_limit(config.max_connections + 256)
    _return_freed_memory_to_the_os()
    if install_signals is None:
        install_signals = threading.current_thread() is threading.main_thread()
    stop = _Stop()
    # Watching before the server exists: a stop that comes while it starts is a graceful one too.
    with SignalWatcher(stop) if install_signals else contextlib.nullcontext():
        server = Server(config)
        stop.attach(server)
        server.run()
