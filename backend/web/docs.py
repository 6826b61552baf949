"""``GET /`` (a small JSON index) and ``/docs``: Swagger UI for ``/openapi.json``.

Swagger UI is served from the ``swagger-ui-bundle`` wheel, never a CDN: clusters without internet
access get working docs, and the page cannot load third-party script.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

from backend.contract import LIVENESS_PATH, READINESS_PATH
from backend.web.responses import json_response
from backend.web.state import get_state

bp = Blueprint("docs", __name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vision AI API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" href="docs/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body></html>
"""
# Relative URLs: the page also works behind a path prefix (ingress, tunnel).
INIT = 'window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true});\n'
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})


def _assets_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


@bp.get("/")
def index():
    from backend.web.openapi import openapi_document

    info = openapi_document(get_state().config)["info"]
    return json_response({"name": info["title"], "version": info["version"],
                          "models": list(get_state().config.models),
                          "links": {"docs": "/docs", "openapi": "/openapi.json", "models": "/v1/models",
                                    "predict": "/predict", "v2": "/v2", "health": LIVENESS_PATH,
                                    "ready": READINESS_PATH}})


@bp.get("/docs")
def docs_page():
    # CSP: only our own origin may supply script/style (Swagger UI needs inline styles and data: images).
    return Response(PAGE, mimetype="text/html", headers={
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"})


@bp.get("/docs/init.js")
def docs_init():
    return Response(INIT, mimetype="text/javascript")


@bp.get("/docs/<asset>")
def docs_asset(asset: str):
    if asset not in ASSETS:
        abort(404)
    return send_from_directory(_assets_dir(), asset, max_age=3600)
