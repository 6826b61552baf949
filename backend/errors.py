"""The API's error vocabulary: typed exceptions that carry a stable code, and the HTTP status that
code comes with.

Kept free of Flask imports on purpose: ``backend.model.decoding`` raises these and is also used outside the
server (evaluation, CLI), where Flask is not installed. ``backend.web.app`` turns them into the JSON body
``{"error": {"code": ..., "message": ...}}``. The codes and their statuses are defined once, in
``backend.contract`` (clients read them there): an error names its code, never a status.
"""

from __future__ import annotations

from backend.contract import ERROR_CODES, IMAGE_TOO_LARGE, INVALID_BASE64, INVALID_REQUEST, UNSUPPORTED_IMAGE


class ApiError(Exception):
    """An error the client can fix (or must be told about) — never logged with a traceback."""

    code = INVALID_REQUEST
    shed: str | None = None  # the reason, when the request is refused to protect the server (metrics)

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None,
                 shed: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}
        if shed is not None:
            self.shed = shed

    @property
    def status(self) -> int:
        """The HTTP status of this error's code (``backend.contract.ERROR_CODES``)."""
        return ERROR_CODES[self.code]

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class InputError(ApiError):
    """Something is wrong with the submitted image (base class of the decoder's errors)."""


class InvalidBase64(InputError):
    code = INVALID_BASE64


class UnsupportedImage(InputError):
    code = UNSUPPORTED_IMAGE


class ImageTooLarge(InputError):
    code = IMAGE_TOO_LARGE


# Start-up failures (not HTTP errors): here so ``python -m backend`` can report them without
# importing ONNX Runtime or the server.

class ModelLoadError(RuntimeError):
    """A model file or card is missing, corrupt or inconsistent; the message names the file."""


class WorkerError(RuntimeError):
    """With ``VISION_WORKERS`` > 1: a worker exited on its own (crash, model load failure)."""
