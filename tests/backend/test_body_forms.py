"""Every accepted request-body form, over real HTTP against Waitress, gives the same prediction as
the canonical JSON body — and shares its limits, errors and metrics."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
import requests
from api_errors import assert_error
from repo import SAMPLES

MAX_BODY = 200_000


@pytest.fixture(scope="module")
def server_env():
    return {"VISION_MAX_BODY_BYTES": str(MAX_BODY)}


def png(dataset: str = "mnist", index: int = 0) -> bytes:
    return next((SAMPLES / dataset).glob(f"{index}-*.png")).read_bytes()


def canonical(server, path: str, data: bytes) -> dict:
    resp = requests.post(server.url + path, json={"base64": base64.b64encode(data).decode()})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("path", ["/predict", "/v1/models/fashion-mnist/predict"])
def test_every_form_matches_the_json_form(server, path):
    data = png("fashion-mnist" if "fashion" in path else "mnist", 1)
    want = canonical(server, path, data)
    b64 = base64.b64encode(data).decode()
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    forms = {
        "literal-unquoted": ({"Content-Type": "application/json"}, b'{"base64": ' + b64.encode() + b"}"),
        "literal-unquoted-wrapped": ({}, ('{ "base64" :\n' + wrapped + "\n}").encode()),
        "json-as-form-urlencoded": ({"Content-Type": "application/x-www-form-urlencoded"},
                                    json.dumps({"base64": b64}).encode()),
        "json-as-text": ({"Content-Type": "text/plain"}, json.dumps({"base64": b64}).encode()),
        "raw-image-png": ({"Content-Type": "image/png"}, data),
        "raw-octet-stream": ({"Content-Type": "application/octet-stream"}, data),
        "raw-wrong-type": ({"Content-Type": "application/x-www-form-urlencoded"}, data),
    }
    for name, (headers, body) in forms.items():
        req = requests.Request("POST", server.url + path, data=body, headers=headers).prepare()
        if not headers:
            req.headers.pop("Content-Type", None)
        with requests.Session() as s:
            resp = s.send(req)
        assert resp.status_code == 200, (name, resp.text)
        assert resp.json() == want, name
    for field in ("file", "image", "whatever"):
        resp = requests.post(server.url + path, files={field: ("x.png", data, "image/png")})
        assert resp.status_code == 200 and resp.json() == want, (field, resp.text)
    resp = requests.post(server.url + path, files={"f": ("x.png", data)}, data={"return_input": "true"})
    assert resp.status_code == 200 and resp.json()["input_image"]
    assert {k: v for k, v in resp.json().items() if k != "input_image"} == want


def test_curl_forms_of_the_readme(server, tmp_path):
    """The exact curl invocations users type (curl picks the Content-Type, not us)."""
    f = tmp_path / "digit.png"
    f.write_bytes(png("mnist", 0))
    want = canonical(server, "/predict", f.read_bytes())["label"]
    b64 = base64.b64encode(f.read_bytes()).decode()
    for args in (["-d", '{"base64": ' + b64 + "}"], ["-d", json.dumps({"base64": b64})],
                 ["--data-binary", f"@{f}", "-H", "Content-Type: image/png"], ["--data-binary", f"@{f}"],
                 ["-F", f"file=@{f}"]):
        out = subprocess.run(["curl", "-s", server.url + "/predict", *args], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        assert json.loads(out)["label"] == want, (args[0], out)


def test_raw_and_multipart_share_the_limits(server):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_BODY + 10)
    for kwargs in ({"data": big, "headers": {"Content-Type": "image/png"}},
                   {"files": {"file": ("big.png", big)}}):
        assert_error(requests.post(server.url + "/predict", **kwargs), 413, "body_too_large", str(MAX_BODY))
    assert_error(requests.post(server.url + "/predict", files={"file": ("x.png", b"GIF89a junk")}), 422,
                 "unsupported_image")


def test_forms_are_counted_in_the_same_metrics(server):
    before = _count(server)
    assert requests.post(server.url + "/predict", data=png(), headers={"Content-Type": "image/png"}).ok
    assert requests.post(server.url + "/predict", files={"file": ("x.png", png())}).ok
    assert _count(server) == before + 2


def _count(server) -> float:
    text = requests.get(server.metrics_url).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vision_http_requests_total{") and 'route="/predict"' in line
               and 'status="200"' in line)
