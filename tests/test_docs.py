"""GET / and the packaged Swagger UI page: served by the backend itself, loadable offline."""

from __future__ import annotations

import re

import pytest
import requests
from devkit.backend_server import BackendServer, test_model_dir


@pytest.fixture(scope="module")
def server():
    with BackendServer(model_dir=test_model_dir()) as s:
        yield s


def test_index_links_resolve(server):
    resp = requests.get(server.url + "/")
    assert resp.status_code == 200
    index = resp.json()
    assert index["name"] == "Vision AI" and re.fullmatch(r"\d+\.\d+\.\d+.*", index["version"])
    assert index["version"] == requests.get(server.url + "/openapi.json").json()["info"]["version"]
    for rel in ("docs", "openapi", "models", "health", "ready", "metrics", "v2"):
        assert requests.get(server.url + index["links"][rel]).status_code == 200, rel


def test_docs_page_assets_come_from_the_server(server):
    page = requests.get(server.url + "/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and not [r for r in refs if "//" in r]  # no CDN, no absolute URL
    for ref in refs:
        asset = requests.get(server.url + "/" + ref)
        assert asset.status_code == 200 and len(asset.content) > 30, ref
    js = requests.get(server.url + "/docs/swagger-ui-bundle.js")
    assert js.headers["Content-Type"].startswith("text/javascript") and b"SwaggerUIBundle" in js.content
    assert requests.get(server.url + "/docs/index.j2").status_code == 404
    assert requests.get(server.url + "/docs/..%2Fapi.py").status_code == 404
