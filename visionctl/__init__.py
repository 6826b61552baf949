"""visionctl — train, package, deploy and operate the Vision AI service."""

from backend.contract import __version__  # noqa: F401  (one definition, in the lowest layer)
