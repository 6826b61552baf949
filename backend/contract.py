"""Facts about the API shared by the backend, the frontend and the CLI — defined once here.

The lowest layer: imports nothing from the project, so every package may depend on it while the
backend depends on no other package (visionctl and frontend import from here, never the reverse).
"""

# Release version: the image tag and the chart appVersion (scripts/build-images.sh reads this line).
__version__ = "0.1.0"

# Models the service can serve.
MODEL_NAMES = ("mnist", "fashion-mnist")
DEFAULT_MODEL = "mnist"

# Port the backend listens on inside its container / as a local process.
BACKEND_PORT = 8080
