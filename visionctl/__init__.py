"""visionctl — train, package, deploy and operate the Vision AI service."""

__version__ = "0.1.0"
