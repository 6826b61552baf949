"""Where the checkout and the shared datasets are: one definition for tests, benchmarks and scripts."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The folder holding mnist/ and fashion-mnist/: $VISION_DATA_DIR (the variable `visionctl train` reads),
# else the ../shared/datasets a checkout sits beside on the team's machines and in CI.
DATASETS = Path(os.environ.get("VISION_DATA_DIR") or ROOT.parent / "shared" / "datasets")
