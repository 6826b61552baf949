"""GET / and the packaged Swagger UI page: served by the backend itself, loadable offline.

In-process (Flask's test client): the routes, the assets and their headers are all Flask's.
"""

from __future__ import annotations

import re


def test_index_links_resolve(client):
    resp = client.get("/")
    assert resp.status_code == 200
    index = resp.json
    assert index["name"] == "Vision AI" and re.fullmatch(r"\d+\.\d+\.\d+.*", index["version"])
    assert index["version"] == client.get("/openapi.json").json["info"]["version"]
    assert index["models"] == ["mnist", "fashion-mnist"]
    assert "metrics" not in index["links"]  # the operator's port, not this API
    for rel in ("docs", "openapi", "models", "predict", "health", "ready", "v2"):
        method = client.post if rel == "predict" else client.get
        status = method(index["links"][rel]).status_code
        assert status == (400 if rel == "predict" else 200), (rel, status)  # predict exists: an empty body is a 400


def test_docs_page_assets_come_from_the_server(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and not [r for r in refs if "//" in r]  # no CDN, no absolute URL
    for ref in refs:
        asset = client.get("/" + ref)
        assert asset.status_code == 200 and len(asset.data) > 30, ref
    js = client.get("/docs/swagger-ui-bundle.js")
    assert js.headers["Content-Type"].startswith("text/javascript") and b"SwaggerUIBundle" in js.data
    for path in ("/docs/index.j2", "/docs/..%2Fapi.py"):
        resp = client.get(path)
        assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found", path
