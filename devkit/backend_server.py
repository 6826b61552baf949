"""Start the real backend (``python -m backend`` on Waitress) on a free loopback port, for tests.

Other test modules import this rather than starting servers their own way::

    from devkit.backend_server import BackendServer, test_model_dir   # tests/ is on sys.path under pytest

    with BackendServer(model_dir=test_model_dir()) as server:
        requests.post(server.url + "/predict", json={"base64": ...})

It runs as a separate process so tests exercise the same entry point, env parsing and signal
handling as production, and so a crash in the server cannot take the test runner down with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR_ENV = "VISION_TEST_MODEL_DIR"


def test_model_dir() -> Path:
    """Model folder for tests: ``$VISION_TEST_MODEL_DIR`` or the repository's ``models/``.

    Raises (so the calling test fails with a clear message) when the ONNX files or model cards are
    missing: a backend test without a real model proves nothing.
    """
    path = Path(os.environ.get(MODEL_DIR_ENV) or ROOT / "models")
    missing = [f.name for n in ("mnist", "fashion-mnist") for f in (path / f"{n}.onnx", path / f"{n}.json")
               if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"test models missing in {path}: {', '.join(missing)}; run `visionctl train` or set {MODEL_DIR_ENV}")
    return path


test_model_dir.__test__ = False  # not a pytest test despite the name


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BackendServer:
    """A backend process on 127.0.0.1:<free port>, its /metrics on another free port (``metrics_url``);
    ``start()`` returns once ``/readyz`` is 200.

    ``env`` adds/overrides ``VISION_*`` variables; ``cpus`` pins the process (and so its workers) to
    those CPUs; ``prefix`` is a command the backend runs under (``proc`` is then that command).
    Output goes to a temp file so a failing test can show it via ``logs()``.
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, env: dict[str, str] | None = None,
                 port: int | None = None, startup_timeout: float = 60.0, root: str | os.PathLike | None = None,
                 cpus: set[int] | None = None, prefix: tuple[str, ...] = ()):
        self.root = Path(root) if root else ROOT  # the source tree to run: another checkout for an A/B run
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.model_dir = Path(model_dir) if model_dir else test_model_dir()
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.cpus = cpus
        self.prefix = prefix  # a command that runs the backend, e.g. in a PID namespace of its own
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._final_logs: str | None = None  # kept after __exit__ removes the file

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
        env.update({
            "VISION_HOST": "127.0.0.1",
            "VISION_PORT": str(self.port),
            "VISION_METRICS_PORT": str(self.metrics_port),
            "VISION_MODEL_DIR": str(self.model_dir),
            "PYTHONUNBUFFERED": "1",
            # One process unless a test asks for more: the production default (auto) depends on
            # the machine's CPUs, and a test's expectations must not.
            "VISION_WORKERS": "1",
        })
        env.update(self.extra_env)
        return env

    def launch(self) -> None:
        """Start the process and return at once (``start()`` also waits until it is ready)."""
        import tempfile

        self._log = tempfile.NamedTemporaryFile(prefix="backend-", suffix=".log", delete=False)
        pin = (lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None
        self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "backend"], cwd=self.root,
                                     env=self.environment(), stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=pin)

    def start(self) -> BackendServer:
        self.launch()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited with {self.proc.returncode} during start:\n{self.logs()}")
            if self.status("/readyz") == 200:
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"backend not ready within {self.startup_timeout}s:\n{self.logs()}")

    def status(self, path: str) -> int | None:
        """HTTP status of GET ``path``, or None if nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def metrics(self) -> str:
        """The Prometheus exposition from the metrics port (a fresh connection, so with several
        workers it is the supervisor's sum)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            return resp.read().decode()

    def logs(self) -> str:
        """Everything the server printed so far (JSON log lines); still available after exit."""
        if self._final_logs is not None:
            return self._final_logs
        if not self._log:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The pids of a supervisor's workers, from its "workers started" log line (none with one process)."""
        for line in self.logs().splitlines():
            if line.startswith("{") and '"workers started"' in line:
                return json.loads(line)["pids"]
        return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``sig`` and wait; returns the exit code. After ``timeout`` it kills the server and its
        workers (a hung stop fails the test, never hangs it or leaves processes behind)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in self.worker_pids():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> BackendServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and remove its log file (``logs()`` keeps answering from memory)."""
        self.stop()
        if self._log:
            self._final_logs = self.logs()
            self._log.close()
            os.unlink(self._log.name)
