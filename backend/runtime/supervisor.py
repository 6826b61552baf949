"""``VISION_WORKERS`` > 1: several backend processes serving one port.

Why: a Python process handles requests on about one core (the GIL), and on this service Python —
HTTP parsing, Flask, preprocessing — costs more than the model. A machine with N cores serves N
times more with N processes. (In Kubernetes, one worker per pod and more replicas does the same.)

How: the supervisor binds one SO_REUSEPORT listening socket per worker on the port — a busy port
fails here, before anything starts — and starts ``python -m backend`` workers that each inherit
their socket (``VISION_LISTEN_FD``). Each worker is the ordinary single-process server: its own
models, readiness and graceful drain. The kernel spreads new connections over the sockets by a
hash of the client address (a single shared socket handed ~70 % of them to one worker, measured).
Workers are fresh interpreters (not forks), so ONNX Runtime and prometheus_client start clean in each.

Metrics: the workers run prometheus_client in multiprocess mode, writing to
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder unless set). The supervisor itself serves
``/metrics`` on the metrics port (``backend.runtime.metrics_server``; workers bind none) and adds up all of
the workers' files — a scrape sees the whole server.

Lifecycle: SIGTERM/SIGINT is passed to every worker (each drains as it would alone) and the
supervisor exits once all have; a second signal is passed on too (workers then exit at once). A
signal while workers start stops the ones started and starts no more. A worker that dies by itself
stops the others and the supervisor exits 1: a server at reduced capacity should be restarted (by
Kubernetes, Docker or systemd), not limp on unnoticed.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

from backend.errors import WorkerError
from backend.metrics import render_multiprocess
from backend.runtime.metrics_server import MetricsServer
from backend.runtime.signals import STOP_SIGNALS, SignalWatcher

log = logging.getLogger("backend.supervisor")

LISTEN_BACKLOG = 1024


def bind(host: str, port: int) -> socket.socket:
    """One worker's listening socket (SO_REUSEADDR like Waitress's own, SO_REUSEPORT to share the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def supervise(config) -> None:
    """Run ``config.workers`` workers until a signal stops them (blocking).

    Raises :class:`OSError` when the port cannot be bound and :class:`WorkerError` when a worker
    exits by itself or fails while stopping.
    """
    socks = [bind(config.host, config.port)]  # one per worker: the kernel spreads connections by hash
    port = socks[0].getsockname()[1]
    try:
        socks += [bind(config.host, port) for _ in range(config.workers - 1)]
    except OSError:
        socks[0].close()
        raise
    own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="vision-metrics-")
    try:
        metrics = MetricsServer(config.host, config.metrics_port, functools.partial(render_multiprocess, metrics_dir))
    except OSError:
        for sock in socks:
            sock.close()
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    workers: dict[int, int] = {}  # pid → worker number
    stopping = [False]
    lock = threading.Lock()  # a signal either reaches a started worker or stops the next one starting

    def forward(signum: int) -> None:  # on the signal thread (backend.runtime.signals)
        with lock:
            if not stopping[0]:
                log.info("stopping workers", extra={"fields": {"signal": signal.Signals(signum).name}})
            stopping[0] = True
            for pid in list(workers):
                _kill(pid, signum)

    failure = None
    with SignalWatcher(forward):
        metrics.start()
        try:
            for n in range(1, config.workers + 1):
                # Own process group: a terminal's Ctrl-C reaches the supervisor only, which passes it
                # on once (a worker receiving it twice would skip its graceful drain).
                fd = socks[n - 1].fileno()
                with lock:
                    if stopping[0]:  # stopped while starting: start no more
                        break
                    proc = subprocess.Popen([sys.executable, "-m", "backend"],
                                            env={**env, "VISION_WORKER_ID": str(n), "VISION_LISTEN_FD": str(fd),
                                                 "VISION_SUPERVISOR_PID": str(os.getpid())},
                                            pass_fds=(fd,), process_group=0)
                    workers[proc.pid] = n
            log.info("workers started", extra={"fields": {
                "url": f"http://{config.host}:{port}", "workers": len(workers),
                "pids": sorted(workers), "metrics_url": metrics.url, "metrics_dir": metrics_dir}})
            # The workers hold the sockets now. Keeping them open here would let the kernel queue
            # connections after a worker has stopped accepting, which nobody would ever answer.
            for sock in socks:
                sock.close()
            failure = _wait(workers, stopping, lock, metrics_dir)
        finally:
            metrics.close()
            for sock in socks:
                sock.close()
            for pid in workers:  # only if we got here by an exception: never leave orphans behind
                _kill(pid, signal.SIGKILL)
            if own_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    if failure:
        raise WorkerError(failure)
    log.info("stopped")


def _wait(workers: dict[int, int], stopping: list[bool], lock: threading.Lock, metrics_dir: str) -> str | None:
    """Reap workers until none is left; returns the first failure's description, if any."""
    from prometheus_client import multiprocess

    failure = None
    while workers:
        pid, status = os.wait()
        with lock:
            n = workers.pop(pid, None)
            if n is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            multiprocess.mark_process_dead(pid, metrics_dir)  # drop its live gauges (in flight, ready)
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
            if not stopping[0]:
                failure = failure or f"worker {n} (pid {pid}) exited with {how}; its log lines above say why"
                log.error("worker exited: stopping the others",
                          extra={"fields": {"worker": n, "pid": pid, "exit": code}})
                stopping[0] = True
                for other in list(workers):
                    _kill(other, signal.SIGTERM)
            elif code != 0 and -code not in STOP_SIGNALS:
                # A worker still starting has no handler yet, and the stop signal ends it where it
                # stands: it was serving nothing, so that is a clean stop.
                failure = failure or f"worker {n} (pid {pid}) exited with {how} while stopping"
    return failure


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
