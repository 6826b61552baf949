"""The serving stack with no work inside it, for ``benchmarks/stack_floor.py``: one process, Waitress
with the backend's 8 threads, answering every POST with a fixed ``{"label": "7"}``.

    python floor_server.py waitress PORT   # a bare WSGI callable (reads the body, answers)
    python floor_server.py flask PORT      # the same behind a Flask route (request context, routing, Response)
"""

from __future__ import annotations

import sys

import waitress

ANSWER = b'{"label":"7"}'


def bare(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


def flask_app():
    from flask import Flask, Response, request

    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        request.get_data()
        return Response(ANSWER, mimetype="application/json")

    return app


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    app = bare if kind == "waitress" else flask_app()
    # The backend's Waitress settings that matter here: 8 threads, poll(), one request read ahead.
    waitress.serve(app, host="127.0.0.1", port=port, threads=8, asyncore_use_poll=True,
                   channel_request_lookahead=1, _quiet=True)
