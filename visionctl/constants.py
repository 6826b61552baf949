"""Names shared by the CLI, the images and the chart — defined once here.

The chart repeats the image names and ports (Helm cannot import Python) and takes the image tag
from its appVersion; tests/charts/test_chart.py asserts they agree with these and with
backend.contract's version.
"""

from pathlib import Path

from backend.contract import BACKEND_PORT, DEFAULT_MODEL, METRICS_PORT, MODEL_NAMES, __version__  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent

# Models
# MODEL_NAMES, DEFAULT_MODEL: re-exported from backend.contract

# Images (built locally, imported into the cluster; explicit tags, never "latest")
IMAGE_TAG = __version__
BACKEND_IMAGE = "vision-ai-backend"
FRONTEND_IMAGE = "vision-ai-frontend"
DOCKERFILE_BACKEND = "Dockerfile.backend"
DOCKERFILE_FRONTEND = "Dockerfile.frontend"

# Ports inside containers / local processes
# BACKEND_PORT, METRICS_PORT: re-exported from backend.contract
FRONTEND_PORT = 8501
RUN_AS_UID = 10001

# Kubernetes
CLUSTER_NAME = "vision-ai"
RELEASE_NAME = "vision-ai"
NAMESPACE = "vision-ai"
CHART_DIR = "charts/vision-ai"
MANIFESTS_DIR = "deploy/manifests"
DEFAULT_HOST_PORT = 8080  # localhost port mapped to the k3d load balancer (Traefik :80)
