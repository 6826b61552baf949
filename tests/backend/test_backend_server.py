"""Process lifecycle: env validation, start-up failures, readiness, graceful SIGTERM drain, workers.

Real ``python -m backend`` processes, except where the behaviour is the app's alone (readiness
while models load, the catch-all 500): those use the app factory in-process."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from api_errors import assert_error
from repo import ROOT, SAMPLES

from backend.config import Config, ConfigError
from devkit.backend_server import BackendServer, free_port, test_model_dir

PNG = (SAMPLES / "mnist" / "8-8.png").read_bytes()
BODY = json.dumps({"base64": base64.b64encode(PNG).decode()})


# --- configuration -------------------------------------------------------------------------------

def test_defaults_match_the_architecture_doc(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    c = Config.from_env({})
    assert (c.host, c.port, c.metrics_port, c.threads, str(c.model_dir), c.models) == \
        ("0.0.0.0", 8080, 9090, 8, "models", ("mnist", "fashion-mnist"))
    assert (c.max_body_bytes, c.max_pixels, c.max_batch, c.api_keys, c.log_level) == \
        (10485760, 16000000, 64, (), "INFO")


def test_config_parses_values(tmp_path):
    c = Config.from_env({"VISION_HOST": "127.0.0.1", "VISION_PORT": "9000", "VISION_THREADS": " 3 ",
                         "VISION_MODEL_DIR": str(tmp_path), "VISION_MODELS": "fashion-mnist, mnist,mnist",
                         "VISION_MAX_BATCH": "5", "VISION_API_KEYS": "a" * 16 + ", " + "b" * 20 + ",",
                         "VISION_LOG_LEVEL": "debug", "VISION_DRAIN_DELAY": "1.5"})
    assert c.port == 9000 and c.threads == 3 and c.models == ("fashion-mnist", "mnist")
    assert c.api_keys == ("a" * 16, "b" * 20) and c.auth_enabled and c.log_level == "DEBUG"
    assert c.drain_delay == 1.5 and c.max_batch == 5
    assert "a" * 16 not in repr(c)  # secrets stay out of reprs and logs


@pytest.mark.parametrize("var, value, fragment", [
    ("VISION_PORT", "http", "not an integer"),
    ("VISION_PORT", "70000", "out of range"),
    ("VISION_PORT", "0", "out of range"),
    ("VISION_METRICS_PORT", "-1", "out of range"),
    ("VISION_METRICS_PORT", "metrics", "not an integer"),
    ("VISION_METRICS_PORT", "8080", "is the API port"),
    ("VISION_THREADS", "0", "out of range"),
    ("VISION_THREADS", "2.5", "not an integer"),
    ("VISION_MAX_BODY_BYTES", "-1", "out of range"),
    ("VISION_MAX_PIXELS", "10", "out of range"),
    ("VISION_MAX_BATCH", "lots", "not an integer"),
    ("VISION_MODEL_DIR", "/no/such/dir", "not a directory"),
    ("VISION_MODELS", " , ", "empty"),
    ("VISION_MODELS", "mnist,../etc", "invalid model name"),
    ("VISION_API_KEYS", "short", "shorter than 16"),
    ("VISION_LOG_LEVEL", "LOUD", "not one of"),
    ("VISION_HOST", "my host", "not an IP address"),
    ("VISION_DRAIN_DELAY", "nan", "out of range"),
    ("VISION_BATCHING", "maybe", "not a boolean"),
    ("VISION_WORKERS", "0", "out of range"),
    ("VISION_WORKERS", "many", "neither 'auto' nor an integer"),
    ("VISION_WORKERS", "-2", "neither 'auto' nor an integer"),
])
def test_bad_values_fail_with_the_variable_named(tmp_path, var, value, fragment):
    env = {"VISION_MODEL_DIR": str(tmp_path), var: value}
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert var in str(info.value) and fragment in str(info.value)


def run_backend(env: dict, timeout: float = 30) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VISION_")}
    full.update({"VISION_HOST": "127.0.0.1", "VISION_PORT": str(free_port()), "VISION_METRICS_PORT": "0",
                 "VISION_WORKERS": "1", **env})
    return subprocess.run([sys.executable, "-m", "backend"], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=timeout)


def test_bad_env_exits_2_with_one_clear_line():
    proc = run_backend({"VISION_THREADS": "many", "VISION_MODEL_DIR": str(test_model_dir())})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["backend: configuration error: VISION_THREADS='many' is not an "
                                                "integer (expected 1..256)"]


def test_missing_model_exits_1(tmp_path):
    proc = run_backend({"VISION_MODEL_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert "backend: cannot load models: model file not found" in proc.stderr
    assert "mnist" in proc.stderr.splitlines()[-1]


def test_workers_that_cannot_load_models_stop_the_supervisor(tmp_path):
    proc = run_backend({"VISION_MODEL_DIR": str(tmp_path), "VISION_WORKERS": "2"})
    assert proc.returncode == 1
    assert "backend: cannot load models: model file not found" in proc.stderr  # the worker's own line
    assert proc.stderr.strip().splitlines()[-1].startswith("backend: worker ")  # and the supervisor's


def test_corrupt_model_exits_1(tmp_path):
    for suffix in ("json", "onnx"):
        (tmp_path / f"mnist.{suffix}").write_bytes((test_model_dir() / f"mnist.{suffix}").read_bytes())
    (tmp_path / "mnist.onnx").write_bytes(b"\0" * 100)  # sha256 no longer matches the card
    proc = run_backend({"VISION_MODEL_DIR": str(tmp_path), "VISION_MODELS": "mnist"})
    assert proc.returncode == 1 and "sha256 does not match" in proc.stderr


@pytest.mark.parametrize("workers", ["1", "3"])
def test_busy_port_exits_1(workers):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        proc = run_backend({"VISION_MODEL_DIR": str(test_model_dir()), "VISION_PORT": str(sock.getsockname()[1]),
                            "VISION_WORKERS": workers})
    assert proc.returncode == 1 and "cannot listen on 127.0.0.1" in proc.stderr


# --- readiness: 503 until every model is loaded and warm (the app, in-process) -------------------

def test_not_ready_until_models_loaded(make_app):
    app = make_app(load=False)
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert_error(client.get("/readyz"), 503, "not_ready", "loading")
    for resp in (client.get("/v1/models"), client.post("/predict", data=BODY, content_type="application/json")):
        assert_error(resp, 503, "not_ready", "loading")
        assert resp.headers["Retry-After"] == "1"
    metrics = app.extensions["vision"].metrics  # what the metrics port serves
    assert b"vision_ready 0.0" in metrics.render()[0]
    app.extensions["vision"].load_models()
    assert client.get("/readyz").status_code == 200
    assert client.post("/predict", data=BODY, content_type="application/json").json["label"] == "8"
    assert b"vision_ready 1.0" in metrics.render()[0]


def test_a_genuine_bug_gives_json_500_and_a_logged_traceback(make_app, caplog):
    """The catch-all: an exception in a view (here a route added only for this test) is a 500 with
    the request id, never a stack trace to the client; the traceback goes to the log."""
    app = make_app(load=False)

    def broken():
        raise ZeroDivisionError("bug")

    app.add_url_rule("/boom", view_func=broken)
    resp = app.test_client().get("/boom", headers={"X-Request-ID": "bug-1"})
    assert resp.status_code == 500
    assert resp.json == {"error": {"code": "internal_error", "message": "internal error (request id bug-1)"}}
    assert "ZeroDivisionError" not in resp.text and resp.headers["X-Request-ID"] == "bug-1"
    record = next(r for r in caplog.records if r.name == "backend.app")
    assert record.exc_info and record.fields["request_id"] == "bug-1"


# --- graceful shutdown ----------------------------------------------------------------------------

def _is_refused(exc: BaseException) -> bool:
    """True if the request never reached the server (connection refused) — not a dropped request."""
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError) or "Connection refused" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_load_drains_without_failures(workers):
    env = {"VISION_DRAIN_DELAY": "0.5", "VISION_THREADS": "4", "VISION_WORKERS": workers}
    with BackendServer(model_dir=test_model_dir(), env=env) as srv:
        stop_at = [None]
        results = {"ok": 0, "closed": 0, "bad": [], "refused": 0, "ok_after_term": 0}
        lock = threading.Lock()
        term_sent = threading.Event()

        def client():
            session = requests.Session()
            while True:
                try:
                    resp = session.post(srv.url + "/predict", data=BODY,
                                        headers={"Content-Type": "application/json"}, timeout=10)
                except requests.RequestException as exc:
                    with lock:
                        if _is_refused(exc) and term_sent.is_set():
                            results["refused"] += 1
                        else:
                            results["bad"].append(repr(exc))
                    return
                with lock:
                    if resp.status_code == 200 and resp.json()["label"] == "8":
                        results["ok"] += 1
                        results["ok_after_term"] += term_sent.is_set()
                        results["closed"] += resp.headers.get("Connection") == "close"
                    else:
                        results["bad"].append(f"{resp.status_code} {resp.text[:100]}")
                if stop_at[0] and time.monotonic() > stop_at[0]:
                    return

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        srv.proc.send_signal(signal.SIGTERM)
        term_sent.set()
        stop_at[0] = time.monotonic() + 15
        time.sleep(0.2)
        assert srv.status("/readyz") == 503  # still listening during the drain delay, but not ready
        assert srv.proc.wait(10) == 0
        for t in threads:
            t.join(15)

    assert results["bad"] == [], results
    assert results["ok"] > 50 and results["ok_after_term"] > 0
    assert results["closed"] > 0  # draining responses told keep-alive clients to go away
    logs = srv.logs()
    assert '"message": "draining"' in logs and '"message": "stopped"' in logs


def test_sigterm_waits_for_a_request_still_being_uploaded():
    with BackendServer(model_dir=test_model_dir()) as srv:
        body = BODY.encode()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])
            time.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert srv.proc.poll() is None  # still waiting for our request
            sock.sendall(body[100:])
            response = b""
            while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert b"Connection: close" in response
        assert srv.proc.wait(10) == 0


def test_idle_keepalive_connections_do_not_delay_exit():
    with BackendServer(model_dir=test_model_dir()) as srv:
        session = requests.Session()
        assert session.get(srv.url + "/healthz").ok  # leaves an idle keep-alive connection open
        start = time.monotonic()
        assert srv.stop(signal.SIGTERM) == 0
        assert time.monotonic() - start < 3
        session.close()


def test_second_signal_exits_at_once():
    with BackendServer(model_dir=test_model_dir(), env={"VISION_DRAIN_DELAY": "30"}) as srv:
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert srv.proc.poll() is None and srv.status("/readyz") == 503  # draining, still serving
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(3) == 1


# --- VISION_WORKERS: several processes on one port ----------------------------------------------

def _log_lines(srv: BackendServer) -> list[dict]:
    return [json.loads(line) for line in srv.logs().splitlines() if line.startswith("{")]


def _counter(metrics_text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines() if line.startswith(prefix))


def test_workers_share_the_port_and_report_metrics_together():
    with BackendServer(model_dir=test_model_dir(), env={"VISION_WORKERS": "2", "VISION_THREADS": "2"}) as srv:
        n = 60
        for _ in range(n):  # a new connection each time, so the kernel hands them to both workers
            resp = requests.post(srv.url + "/predict", data=BODY, headers={"Content-Type": "application/json",
                                                                           "Connection": "close"}, timeout=10)
            assert resp.status_code == 200 and resp.json()["label"] == "8"
        answered = {e["worker"] for e in _log_lines(srv) if e.get("route") == "/predict" and e.get("status") == 200}
        assert answered == {1, 2}
        # The supervisor's metrics port reports the requests of both workers.
        for _ in range(4):
            text = srv.metrics()
            assert _counter(text, 'vision_http_requests_total{method="POST",model="mnist",route="/predict",'
                                  'status="200"}') == n
            assert _counter(text, 'vision_predictions_total{label="8",model="mnist"}') == n
            assert "vision_ready 1.0" in text
            assert text.count("vision_model_info{") == 2
        assert srv.stop() == 0
    started = next(e for e in _log_lines(srv) if e["message"] == "workers started")
    assert not Path(started["metrics_dir"]).exists()  # the supervisor cleans up its metrics folder


def _alive(pid: int) -> bool:
    """Running and not a zombie (an orphan that exited waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_worker_that_dies_takes_the_server_down():
    """Half a server must not limp on unnoticed: the supervisor stops the rest and exits 1."""
    with BackendServer(model_dir=test_model_dir(), env={"VISION_WORKERS": "2"}) as srv:
        pids = srv.worker_pids()
        os.kill(pids[0], signal.SIGKILL)
        assert srv.proc.wait(15) == 1
        assert not any(_alive(pid) for pid in pids)
    assert "exited with signal SIGKILL" in srv.logs()


def test_workers_leave_when_the_supervisor_is_killed():
    with BackendServer(model_dir=test_model_dir(), env={"VISION_WORKERS": "2"}) as srv:
        pids = srv.worker_pids()
        srv.proc.kill()
        srv.proc.wait(5)
        # A worker notices within ~1 s and drains; its own bound is VISION_SHUTDOWN_TIMEOUT (20 s),
        # which a loaded CI machine can approach, so wait past that rather than a guess.
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), "orphaned workers kept running"


@pytest.mark.parametrize("moment", ["workers started", "ready"])
def test_a_stop_while_workers_start_is_clean(moment):
    """SIGTERM just after the workers were spawned (still importing), or once the first is ready
    (the other still loading its models): every worker ends, and the supervisor exits 0."""
    srv = BackendServer(model_dir=test_model_dir(), env={"VISION_WORKERS": "2"})
    srv.launch()
    try:
        deadline = time.monotonic() + 60
        while f'"message": "{moment}"' not in srv.logs() and time.monotonic() < deadline:
            time.sleep(0.005)
        code = srv.stop()  # SIGTERM; a stop that hangs is killed, workers too, and fails below
    finally:
        srv.close()
    assert code == 0, srv.logs()[-6000:]
    assert srv.worker_pids() and not any(_alive(pid) for pid in srv.worker_pids())
