"""Facts about the API shared by the backend, the frontend and the CLI — defined once here.

The lowest layer: imports nothing from the project, so every package may depend on it while the
backend depends on no other package (visionctl and frontend import from here, never the reverse).
"""

# Release version: the image tag and the chart appVersion (scripts/build-images.sh reads this line).
__version__ = "0.1.0"

# Models the service can serve.
MODEL_NAMES = ("mnist", "fashion-mnist")
DEFAULT_MODEL = "mnist"

# What each model's images are, for the verdict on an image that is not one ("this does not look
# like a handwritten digit"): the API's reason, the CLI and the UI say it the same way.
SUBJECTS = {"mnist": "a handwritten digit", "fashion-mnist": "a clothing item"}


def subject(model: str) -> str:
    """What ``model``'s images are ("a handwritten digit"); generic for a model not listed above."""
    return SUBJECTS.get(model, "an image this model was trained on")

# The kubelet's probes: liveness (the process serves HTTP) and readiness (every model loaded, not
# draining). Open without a key, never rate-limited, never shed under overload.
LIVENESS_PATH, READINESS_PATH = "/healthz", "/readyz"
PROBE_PATHS = frozenset({LIVENESS_PATH, READINESS_PATH})

# Ports the backend listens on inside its container / as a local process: the API, and the operator
# plane (/metrics only), which the network admits from the monitoring stack alone.
BACKEND_PORT = 8080
METRICS_PORT = 9090

# How a model card's ``input.preprocessing`` says its images are prepared (backend.model.preprocessing):
# "digit" crops to the ink and centres it by mass, as MNIST was made; "frame" keeps the whole frame,
# as Fashion-MNIST was made.
DIGIT, FRAME = "digit", "frame"
PREPROCESSING_MODES = (DIGIT, FRAME)

# The ``code`` of every JSON error body, ``{"error": {"code": ..., "message": ...}}``: stable strings
# clients switch on (the status alone does not tell a bad image from a bad body).
INVALID_JSON = "invalid_json"
INVALID_REQUEST = "invalid_request"
INVALID_BASE64 = "invalid_base64"
UNAUTHORIZED = "unauthorized"
NOT_FOUND = "not_found"
MODEL_NOT_FOUND = "model_not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
BODY_TOO_LARGE = "body_too_large"
IMAGE_TOO_LARGE = "image_too_large"
BATCH_TOO_LARGE = "batch_too_large"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
REQUEST_TIMEOUT = "request_timeout"
UNSUPPORTED_IMAGE = "unsupported_image"
HEADERS_TOO_LARGE = "headers_too_large"
CLIENT_CLOSED_REQUEST = "client_closed_request"
RATE_LIMITED = "rate_limited"
INTERNAL_ERROR = "internal_error"
NOT_IMPLEMENTED = "not_implemented"
NOT_READY = "not_ready"
OVERLOADED = "overloaded"
DEADLINE_EXCEEDED = "deadline_exceeded"

# Each code with the one HTTP status it comes with (/openapi.json lists them).
ERROR_CODES = {
    INVALID_JSON: 400,
    INVALID_REQUEST: 400,
    INVALID_BASE64: 400,
    UNAUTHORIZED: 401,
    NOT_FOUND: 404,
    MODEL_NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    BODY_TOO_LARGE: 413,
    IMAGE_TOO_LARGE: 413,
    BATCH_TOO_LARGE: 413,
    UNSUPPORTED_MEDIA_TYPE: 415,
    REQUEST_TIMEOUT: 408,
    UNSUPPORTED_IMAGE: 422,
    HEADERS_TOO_LARGE: 431,
    CLIENT_CLOSED_REQUEST: 499,
    RATE_LIMITED: 429,
    INTERNAL_ERROR: 500,
    NOT_IMPLEMENTED: 501,
    NOT_READY: 503,
    OVERLOADED: 503,
    DEADLINE_EXCEEDED: 503,
}
