"""Run the real Prometheus (Debian's ``prometheus`` package) against loopback targets, for tests.

    from devkit.prometheus_server import PrometheusServer, require_prometheus

    with PrometheusServer(targets=["127.0.0.1:8123"], rule_files=[RULES]) as prom:
        prom.query('up')                       # -> list of result series; raises on a PromQL error

Also used by scripts/render-dashboard.py. The binaries are looked up on ``PATH``; when missing the
tests skip, except with ``VISION_REQUIRE_PROMETHEUS=1`` (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from devkit.backend_server import free_port


def find_tool(name: str) -> str | None:
    return shutil.which(name)


def require_prometheus(name: str = "prometheus") -> str:
    """Path of ``prometheus`` or ``promtool``, or skip (fail when ``VISION_REQUIRE_PROMETHEUS=1``)."""
    import pytest

    path = find_tool(name)
    if path:
        return path
    message = f"{name} not found on PATH; install it with `apt-get install prometheus`"
    if os.environ.get("VISION_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(message + " (VISION_REQUIRE_PROMETHEUS=1)")
    pytest.skip(message)


class PromQLError(RuntimeError):
    pass


class PrometheusServer:
    """A Prometheus on 127.0.0.1:<free port> with its own temporary TSDB, scraping ``targets``
    (job ``vision-ai``, path /metrics) every ``interval`` and evaluating ``rule_files`` as often."""

    def __init__(self, targets: list[str], rule_files: list[Path] = (), interval: str = "1s",
                 binary: str | None = None, startup_timeout: float = 30.0):
        self.binary = binary or find_tool("prometheus") or "prometheus"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets = list(targets)
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]
        self.interval = interval
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def config(self) -> dict:
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval,
                       "scrape_timeout": self.interval},
            "rule_files": self.rule_files,
            "scrape_configs": [{"job_name": "vision-ai", "metrics_path": "/metrics",
                                "static_configs": [{"targets": self.targets}]}],
        }

    def start(self) -> PrometheusServer:
        self._dir = tempfile.TemporaryDirectory(prefix="prometheus-")
        work = Path(self._dir.name)
        (work / "prometheus.yml").write_text(json.dumps(self.config()))  # JSON is YAML
        self._log = open(work / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=work)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready within {self.startup_timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        if not self._dir:
            return ""
        self._log.flush()
        return (Path(self._dir.name) / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; returns ``data``; raises PromQLError with Prometheus' message on error."""
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, time_: float | None = None) -> list[dict]:
        params = {"query": expr}
        if time_ is not None:
            params["time"] = f"{time_:.3f}"
        return self.api("query", **params)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=str(step))["result"]

    def wait_for(self, expr: str, timeout: float = 20.0) -> list[dict]:
        """Poll until ``expr`` returns at least one series (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no data for {expr} within {timeout}s:\n{self.logs()}")
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._dir:
            self._log.close()
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def mixed_traffic(base_url: str, rounds: int = 1) -> int:
    """Requests that touch every series the rules and the dashboard read: both models, a batch,
    single images, clothes sent to the digit model in strict mode (out-of-distribution verdicts and
    abstentions), client errors (400, 404, 415), metadata routes. Returns how many were sent."""
    import base64

    import requests

    root = Path(__file__).resolve().parent.parent / "samples"
    images = [base64.b64encode(p.read_bytes()).decode() for p in sorted((root / "mnist").glob("*.png"))]
    fashion = [base64.b64encode(p.read_bytes()).decode() for p in sorted((root / "fashion-mnist").glob("*.png"))]
    sent = 0
    with requests.Session() as s:
        for _ in range(rounds):
            for b64 in images:
                s.post(base_url + "/predict", json={"base64": b64}, timeout=10)
            for b64 in fashion[:3]:
                s.post(base_url + "/v1/models/fashion-mnist/predict", json={"base64": b64}, timeout=10)
            for b64 in fashion[3:6]:
                s.post(base_url + "/predict", json={"base64": b64, "strict": True}, timeout=10)
            s.post(base_url + "/v1/models/mnist/predict", json={"instances": [{"base64": b} for b in images]},
                   timeout=10)
            s.post(base_url + "/predict", json={"base64": "not base64!"}, timeout=10)          # 400
            s.post(base_url + "/v1/models/nope/predict", json={"base64": images[0]}, timeout=10)  # 404
            s.post(base_url + "/predict", data=b"x", headers={"Content-Type": "text/plain"}, timeout=10)  # 415
            s.get(base_url + "/v1/models", timeout=10)
            sent += len(images) + 3 + 3 + 1 + 4
    return sent
