"""The API's error vocabulary: typed exceptions that carry their HTTP status and a stable code.

Kept free of Flask imports on purpose: ``backend.decoding`` raises these and is also used outside the
server (evaluation, CLI), where Flask is not installed. ``backend.app`` turns them into the JSON body
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the client can fix (or must be told about) — never logged with a traceback."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class InputError(ApiError):
    """Something is wrong with the submitted image (base class of the decoder's errors)."""


class InvalidBase64(InputError):
    status, code = 400, "invalid_base64"


class UnsupportedImage(InputError):
    status, code = 422, "unsupported_image"


class ImageTooLarge(InputError):
    status, code = 413, "image_too_large"


# Codes the API can answer with; the OpenAPI document lists them so clients can switch on them.
ERROR_CODES = {
    "invalid_json": 400,
    "invalid_request": 400,
    "invalid_base64": 400,
    "unauthorized": 401,
    "not_found": 404,
    "model_not_found": 404,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "image_too_large": 413,
    "batch_too_large": 413,
    "unsupported_media_type": 415,
    "request_timeout": 408,
    "unsupported_image": 422,
    "headers_too_large": 431,
    "client_closed_request": 499,
    "rate_limited": 429,
    "internal_error": 500,
    "not_implemented": 501,
    "not_ready": 503,
    "overloaded": 503,
    "deadline_exceeded": 503,
}


# Start-up failures (not HTTP errors): here so ``python -m backend`` can report them without
# importing ONNX Runtime or the server.

class ModelLoadError(RuntimeError):
    """A model file or card is missing, corrupt or inconsistent; the message names the file."""


class WorkerError(RuntimeError):
    """With ``VISION_WORKERS`` > 1: a worker exited on its own (crash, model load failure)."""
