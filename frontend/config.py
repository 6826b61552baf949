"""Frontend settings, read from the environment once per process.

The API connection (``VISION_API_URL``, ``VISION_API_KEY``, ``VISION_API_TIMEOUT``) is parsed by
:class:`vision_client.VisionClient` — the CLI uses the same code, so both agree on defaults and
validation. This module adds what only the page needs and turns a bad value into one readable
message instead of a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vision_client import VisionClient

# Sidebar probes must not freeze the page for the full prediction timeout when a URL points at
# a host that swallows packets; a loopback or in-cluster /readyz answers in milliseconds.
PROBE_TIMEOUT = 2.0

# ``samples/<model>/<class index>-<slug>.png`` beside ``frontend/`` in the checkout and in the image.
DEFAULT_SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"


@dataclass(frozen=True)
class Settings:
    api_url: str
    api_key: str | None = field(repr=False)  # never in logs or error pages
    timeout: float
    samples_dir: Path

    @property
    def probe_timeout(self) -> float:
        return min(PROBE_TIMEOUT, self.timeout)

    def client(self) -> VisionClient:
        """Client for predictions (the full ``VISION_API_TIMEOUT``)."""
        return VisionClient(self.api_url, api_key=self.api_key or "", timeout=self.timeout)

    def probe_client(self) -> VisionClient:
        """Client for readiness and model listing (short timeout, see ``PROBE_TIMEOUT``)."""
        return VisionClient(self.api_url, api_key=self.api_key or "", timeout=self.probe_timeout)


def load_settings() -> Settings:
    """Settings from the environment; raises ``ValueError`` with the variable's name when invalid."""
    client = VisionClient()  # parses and validates the VISION_API_* variables
    client.close()
    samples = os.environ.get("VISION_SAMPLES_DIR", "").strip()
    return Settings(api_url=client.base_url, api_key=client.api_key, timeout=client.timeout,
                    samples_dir=Path(samples) if samples else DEFAULT_SAMPLES_DIR)
