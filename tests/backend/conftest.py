"""Fixtures of the backend tests: the Flask app in-process, and real ``python -m backend`` servers.

Two ways in, chosen by where the behaviour under test lives:

* ``app`` / ``client`` (flaskr style): the app factory with a test config on the real ONNX models,
  called through Flask's test client — for everything Flask decides (routes, body parsing, the
  JSON error matrix, OpenAPI, docs, explanations). No port, no process, no Waitress.
* ``server``: the real process on Waitress over loopback HTTP — for what Waitress, the guard and the
  process decide (HTTP-level limits, slow clients, load shedding, signals, workers, stdout logs).
  A module changes its server's settings by overriding ``server_env``; both fixtures live in
  tests/conftest.py, as the CLI, client and UI tests use the same server.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from backend_limits import MAX_BATCH, MAX_BODY, MAX_PIXELS
from flask import Flask
from flask.testing import FlaskClient

from backend.config import Config
from backend.web.app import create_app
from devkit.backend_server import test_model_dir


@pytest.fixture(scope="session")
def make_app() -> Callable[..., Flask]:
    """``make_app(load=True, **config)``: a new app on the real models; ``load=False`` leaves the
    models unloaded (the state ``/readyz`` reports while a server starts)."""

    def make(load: bool = True, **settings) -> Flask:
        config = Config(**{"model_dir": test_model_dir(), "max_body_bytes": MAX_BODY, "max_pixels": MAX_PIXELS,
                           "max_batch": MAX_BATCH, **settings})
        app = create_app(config)
        app.config["TESTING"] = True
        if load:
            app.extensions["vision"].load_models()
        return app

    return make


@pytest.fixture(scope="module")
def app(make_app) -> Flask:
    """One app per module: loading and warming both models costs ~0.2 s, and requests change
    nothing in it but metric counters (which tests read as deltas)."""
    return make_app()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


