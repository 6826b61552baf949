"""Per-app shared state (``app.extensions["vision"]``) and its accessor for the blueprints.

Its own module so the blueprints and the HTTP guard reach the state without importing the app
factory that registers them (``backend.web.app`` imports the blueprints, never the reverse).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import current_app

from backend.config import Config
from backend.metrics import Metrics
from backend.model.inference import Registry
from backend.protection.admission import ExplainBudget, SpoolBudget
from backend.protection.budget import MemoryBudget
from backend.protection.ratelimit import RateLimiter
from backend.releases.manager import Releases
from backend.serving.pipeline import Pipeline

EXTENSION = "vision"  # the key in ``app.extensions``


@dataclass
class State:
    """Per-app shared state (``app.extensions["vision"]``)."""

    config: Config
    registry: Registry
    metrics: Metrics
    memory: MemoryBudget
    limiter: RateLimiter
    releases: Releases
    spool: SpoolBudget
    explain: ExplainBudget
    pipeline: Pipeline  # load → preprocess → predict → postprocess, for every predicting route
    draining: threading.Event = field(default_factory=threading.Event)

    @property
    def ready(self) -> bool:
        return self.registry.ready.is_set() and not self.draining.is_set()

    def load_models(self) -> None:
        """Load and warm up every model (blocking), then publish them in ``vision_model_info`` and their
        prediction series with the card's baseline (the drift alerts compare the two)."""
        self.registry.load()
        self.registry.ready.clear()  # ready once the release state (maybe another stable) is applied too
        self.releases.sync()
        self.releases.start()
        self.registry.ready.set()
        for name, model in self.registry.models.items():
            self.metrics.model_info.labels(name, model.card.version).set(1)
            ood = model.card.ood
            self.metrics.add_model(name, model.card.labels, ood.baseline_ood_share, ood.baseline_class_share)
        self.metrics.refresh()

    def start_draining(self) -> None:
        """Shutdown has begun: /readyz answers 503 from now on."""
        self.draining.set()
        self.metrics.refresh()


def get_state() -> State:
    """The state of the app serving the current request."""
    return current_app.extensions[EXTENSION]
