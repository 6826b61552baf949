"""HTTP client of the Vision AI API — used by ``visionctl predict`` and the Streamlit frontend.

Only ``requests`` (the frontend image has no torch or onnxruntime). Defaults come from the same
environment variables as the frontend (``VISION_API_URL``, ``VISION_API_KEY``,
``VISION_API_TIMEOUT``), so a client built with no arguments talks to whatever the deployment
configured.

Every failure is one of two exceptions, so callers can show a friendly message instead of a
traceback:

* :class:`ApiError` — the API answered with an error status (``status``, ``code``, ``message``
  parsed from the backend's ``{"error": {"code", "message"}}`` body, or a summary of a non-JSON
  body such as a proxy's 502 page);
* :class:`ApiUnavailable` — nothing usable answered (connection refused, DNS, TLS, timeout).

Both derive from :class:`ClientError`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import requests

from backend.contract import BACKEND_PORT, DEFAULT_MODEL

DEFAULT_API_URL = f"http://127.0.0.1:{BACKEND_PORT}"
DEFAULT_TIMEOUT = 10.0
API_KEY_HEADER = "X-API-Key"


class ClientError(Exception):
    """Base of every error the client raises."""


class ApiError(ClientError):
    """The API answered with a non-2xx status."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ApiUnavailable(ClientError):
    """The API could not be reached or did not answer in time."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"API at {url} is unavailable: {reason}")
        self.url = url
        self.reason = reason


def encode_image(data: bytes) -> str:
    """Image bytes → the standard base64 text the API expects in ``"base64"``."""
    return base64.b64encode(data).decode("ascii")


def _env_timeout() -> float:
    raw = os.environ.get("VISION_API_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"VISION_API_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"VISION_API_TIMEOUT must be > 0, got {raw!r}")
    return value


class VisionClient:
    """A session against one API base URL (local ``serve``, the cluster ingress or a tunnel URL).

    Arguments left as ``None`` come from ``VISION_API_URL`` / ``VISION_API_KEY`` /
    ``VISION_API_TIMEOUT``. The underlying :class:`requests.Session` keeps connections alive,
    which matters for the frontend's repeated calls and for batch CLI runs.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float | None = None):
        self.base_url = (base_url or os.environ.get("VISION_API_URL") or DEFAULT_API_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"API URL must start with http:// or https://, got {self.base_url!r}")
        self.api_key = api_key if api_key is not None else (os.environ.get("VISION_API_KEY") or None)
        self.timeout = float(timeout) if timeout is not None else _env_timeout()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "visionctl-client"
        if self.api_key:
            self.session.headers[API_KEY_HEADER] = self.api_key

    # -- plumbing -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        url = self.base_url + path
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise ApiUnavailable(self.base_url, f"no answer within {self.timeout:g}s") from None
        except requests.ConnectionError as exc:
            raise ApiUnavailable(self.base_url, _connection_reason(exc)) from None
        except requests.RequestException as exc:  # invalid URL, too many redirects, ...
            raise ApiUnavailable(self.base_url, str(exc)) from None

    def _json(self, method: str, path: str, **kwargs) -> Any:
        resp = self._request(method, path, **kwargs)
        if not resp.ok:
            raise _api_error(resp)
        try:
            return resp.json()
        except ValueError:
            raise ApiError(resp.status_code, "invalid_response",
                           f"expected JSON from {path}, got {_snippet(resp)}") from None

    def _probe(self, path: str) -> bool:
        try:
            return self._request("GET", path).status_code == 200
        except ApiUnavailable:
            return False

    # -- API ----------------------------------------------------------------------------------

    def predict(self, image: bytes, model: str = DEFAULT_MODEL, return_input: bool = False,
                strict: bool | None = None) -> dict:
        """Classify one image (encoded bytes: PNG, JPEG, ...). Returns the API's JSON answer:
        ``model``, ``model_version``, ``label``, ``class_index``, ``confidence``, ``probabilities``,
        the verdict ``in_distribution`` and ``ood_score`` (with a ``reason`` when the image does not
        look like the model's kind), and ``input_image`` (the 28×28 model input as base64 PNG) when
        ``return_input``. ``strict=True`` asks the API to abstain on such an image (``label`` and
        ``class_index`` None); None leaves it to the server's default."""
        body = _body(image, return_input, strict)
        return self._json("POST", f"/v1/models/{quote(model, safe='')}/predict", json=body)

    def explain(self, image: bytes, model: str = DEFAULT_MODEL, strict: bool | None = None) -> dict:
        """Occlusion explanation of one image: the prediction (verdict included) plus ``attributions``
        (28×28) and ``overlay`` (base64 PNG of the input with the important pixels in red)."""
        return self._json("POST", f"/v1/models/{quote(model, safe='')}/explain",
                          json=_body(image, False, strict))

    def predict_default(self, image: bytes) -> dict:
        """``POST /predict`` — the MNIST endpoint of the README's curl (smoke tests use it so they
        check exactly what users will call)."""
        return self._json("POST", "/predict", json={"base64": encode_image(image)})

    def predict_batch(self, images: Iterable[bytes], model: str = DEFAULT_MODEL, strict: bool | None = None) -> dict:
        """Classify several images in one request; ``predictions`` keeps the input order, each with
        its own verdict."""
        body: dict[str, Any] = {"instances": [{"base64": encode_image(img)} for img in images]}
        if strict is not None:
            body["strict"] = strict
        return self._json("POST", f"/v1/models/{quote(model, safe='')}/predict", json=body)

    def models(self) -> list[dict]:
        """Model descriptions (name, version, labels, accuracy, input spec) from ``GET /v1/models``."""
        data = self._json("GET", "/v1/models")
        return data["models"] if isinstance(data, dict) and "models" in data else data

    def model(self, name: str) -> dict:
        """One model's description; :class:`ApiError` 404 for an unknown name."""
        return self._json("GET", f"/v1/models/{quote(name, safe='')}")

    def ready(self) -> bool:
        """True when every model is loaded and warmed up (``/readyz`` is 200); False when not ready
        *or* unreachable — use :meth:`health` / catch :class:`ApiUnavailable` to tell them apart."""
        return self._probe("/readyz")

    def health(self) -> bool:
        """True when the process is alive (``/healthz`` is 200), False otherwise or unreachable."""
        return self._probe("/healthz")

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> VisionClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VisionClient({self.base_url!r}, api_key={'set' if self.api_key else 'none'}, timeout={self.timeout:g})"


def _body(image: bytes, return_input: bool, strict: bool | None) -> dict[str, Any]:
    body: dict[str, Any] = {"base64": encode_image(image)}
    if return_input:
        body["return_input"] = True
    if strict is not None:
        body["strict"] = strict
    return body


def _snippet(resp: requests.Response, limit: int = 200) -> str:
    text = " ".join(resp.text.split())
    ctype = resp.headers.get("Content-Type", "unknown content type")
    return f"{ctype}: {text[:limit]}{'…' if len(text) > limit else ''}" if text else f"an empty {ctype} body"


def _api_error(resp: requests.Response) -> ApiError:
    """Parse ``{"error": {"code", "message"}}``; anything else (a proxy's HTML page, a tunnel's
    error) still becomes an ApiError with the status and a short, readable excerpt."""
    try:
        err = resp.json()["error"]
        return ApiError(resp.status_code, str(err.get("code") or "error"), str(err.get("message") or ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        reason = resp.reason or "HTTP error"
        return ApiError(resp.status_code, "http_error", f"{reason} ({_snippet(resp)})")


def _connection_reason(exc: requests.ConnectionError) -> str:
    """The innermost, human part of urllib3's nested connection errors."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "nodename nor servname",
                   "Temporary failure in name resolution", "No route to host", "Connection reset",
                   "Remote end closed connection", "CERTIFICATE_VERIFY_FAILED"):
        if marker in text:
            return marker
    return text
