"""``python -m backend``: run the inference service on Waitress (configuration from VISION_* env)."""

import sys

from backend.server import main

sys.exit(main())
