"""The one inference pipeline: every route that predicts — ``/predict``, a batch, ``/v1/models/{name}/
predict``, a versioned predict, Open Inference Protocol v2 ``infer`` and ``explain`` — runs these stages.

The shape is KServe's ``Model``: **load** (the model a request names, with one error for one that is
not served), **preprocess** (decode and prepare each image inside the request's memory, pixel and
time budgets), **predict** (the release that answers: stable, canary or a named version) and
**postprocess** (the verdict on each image and the prediction series the drift alerts watch). Each
stage is timed once, in one place: ``vision_preprocessing_duration_seconds`` once per image,
``vision_inference_duration_seconds`` and ``vision_batch_size`` once per run. The routes only read
their body and shape their answer, so a step added here (a verdict, a version) reaches them all.

No Flask here: what the pipeline needs of the request it serves travels in a :class:`Call`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from backend.contract import CLIENT_CLOSED_REQUEST, DEADLINE_EXCEEDED, MODEL_NOT_FOUND, NOT_READY
from backend.errors import ApiError, ImageTooLarge
from backend.model import verdict
from backend.model.decoding import decode_base64, open_image
from backend.model.inference import Model, Prediction, Registry
from backend.model.occlusion import occlusion_batch
from backend.model.preprocessing import preprocess
from backend.protection.budget import MemoryBudget, estimate
from backend.releases.manager import Releases, VersionNotServed


@dataclass(slots=True)
class Call:
    """The request a pipeline run works for, as the pipeline needs it."""

    deadline: float  # time.perf_counter() after which the rest of a batch is not worth working on
    client_gone: Callable[[], bool] | None = None  # True once the client has hung up (Waitress tells)
    headers: Mapping[str, str] | None = None  # the release router reads a client key from them
    pixels: int = 0  # pixels of this request's images so far (VISION_MAX_BATCH_PIXELS)


class Pipeline:
    """load → preprocess → predict → postprocess, over one app's models, releases and budgets."""

    def __init__(self, registry: Registry, releases: Releases, metrics, memory: MemoryBudget, config):
        self.registry = registry
        self.releases = releases
        self.metrics = metrics
        self.memory = memory
        self.max_pixels = config.max_pixels
        self.max_batch_pixels = config.max_batch_pixels

    # --- load ----------------------------------------------------------------------------------

    def load(self, name: str, version: str | None = None) -> Model:
        """The served model called ``name`` (or its loaded ``version``: stable or a gated candidate):
        503 while the models load, 404 for a name or version not served."""
        registry = self.registry
        if not registry.ready.is_set():
            raise ApiError(registry.error or "models are still loading; retry shortly", code=NOT_READY,
                           headers={"Retry-After": "1"})
        model = registry.get(name)
        if model is None:
            raise ApiError(f"unknown model {name!r}; available: {', '.join(registry.models) or 'none'}",
                           code=MODEL_NOT_FOUND)
        if version is None:
            return model
        try:
            return self.releases.model_for(name, version)
        except VersionNotServed as exc:
            raise ApiError(str(exc), code=MODEL_NOT_FOUND) from None

    # --- preprocess ----------------------------------------------------------------------------

    def preprocess(self, name: str, model: Model, items: Sequence[bytes | str], call: Call,
                   where: Callable[[int], str] | None = None) -> np.ndarray:
        """Encoded images (bytes, or base64 text) → the (N, 28, 28) model input. Between images, work
        nobody will read (the client left, the deadline passed) stops; ``where(i)`` prefixes an
        image's error so a batch says which image is wrong."""
        observe = self.metrics.preprocessing_by[(name,)].observe
        images = []
        for i, item in enumerate(items):
            start = time.perf_counter()
            if i:
                _check_still_wanted(call, start)
            try:
                images.append(self._prepare(item, model, call))
            except ApiError as exc:
                if where is None:
                    raise
                raise ApiError(f"{where(i)}: {exc.message}", code=exc.code) from None
            observe(time.perf_counter() - start)
        return np.stack(images)

    def preprocess_tensor(self, name: str, model: Model, x: np.ndarray) -> np.ndarray:
        """A tensor already normalised by the client ((pixel − mean) / std, (N, 28, 28)) → the model
        input in [0, 1] pixels, which the model normalises itself."""
        start = time.perf_counter()
        images = (x * np.float32(model.card.std) + np.float32(model.card.mean)).astype(np.float32)
        seconds = (time.perf_counter() - start) / len(images)  # one image's share, once per image
        observe = self.metrics.preprocessing_by[(name,)].observe
        for _ in range(len(images)):
            observe(seconds)
        return images

    def _prepare(self, item: bytes | str, model: Model, call: Call) -> np.ndarray:
        data = item if isinstance(item, bytes) else decode_base64(item)

        def reserve(size: tuple[int, int], mode: str) -> None:
            # A batch costs at most what one image of the batch pixel limit costs, whatever its count.
            call.pixels += size[0] * size[1]
            if call.pixels > self.max_batch_pixels:
                raise ImageTooLarge(f"the images of this request have more than {self.max_batch_pixels} "
                                    "pixels in all (VISION_MAX_BATCH_PIXELS); send fewer or smaller images")
            held.enter_context(self.memory.reserve(estimate(size, mode)))

        with ExitStack() as held:  # the reservation lasts until the image is reduced to 28×28
            return preprocess(open_image(data, self.max_pixels, reserve=reserve), model.card.preprocessing)

    # --- predict -------------------------------------------------------------------------------

    def predict(self, name: str, batch: np.ndarray, call: Call, version: str | None = None) -> tuple[Prediction, Model]:
        """Run ``batch`` on the release that answers this request (stable, the canary or ``version``;
        ``backend.releases``) → ``(prediction, the model that answered)``."""
        start = time.perf_counter()
        prediction, model = self.releases.predict(name, batch, call.headers, version)
        self._ran(name, start, len(batch))
        return prediction, model

    def predict_occluded(self, name: str, model: Model, image: np.ndarray) -> Prediction:
        """One image and its occluded copies (``backend.model.occlusion``) in one run → row 0 is the
        image's own prediction. In this thread, not through the batcher: predictions must not queue
        behind 145 occluded rows."""
        start = time.perf_counter()
        prediction = model.run(occlusion_batch(image))
        self._ran(name, start, 1)
        return prediction

    def _ran(self, name: str, start: float, images: int) -> None:
        metrics = self.metrics
        metrics.inference_by[(name,)].observe(time.perf_counter() - start)
        metrics.batch_size_by[(name,)].observe(images)

    # --- postprocess ---------------------------------------------------------------------------

    def postprocess(self, name: str, model: Model, prediction: Prediction, strict: bool) -> list[dict]:
        """The verdict fields of each image (``backend.model.verdict``), counted in the prediction
        series the drift alerts compare with the model card's baseline."""
        card = model.card
        labels, threshold = card.labels, card.ood.threshold
        observe = self.metrics.observe_prediction
        items = []
        for row, score, ok in zip(prediction.probs, prediction.ood_score, prediction.in_distribution, strict=True):
            index = int(row.argmax())
            item = verdict.fields(name, labels, index, row, score, ok, threshold, strict)
            observe(name, labels[index], item["confidence"], item["in_distribution"], item["label"] is None)
            items.append(item)
        return items


def _check_still_wanted(call: Call, now: float) -> None:
    if call.client_gone is not None and call.client_gone():
        raise ApiError("the client closed the connection; the rest of the batch was not processed",
                       code=CLIENT_CLOSED_REQUEST)
    if now > call.deadline:
        raise ApiError("the request ran past its deadline (VISION_REQUEST_DEADLINE); send fewer or smaller "
                       "images, or retry when the server is less busy", code=DEADLINE_EXCEEDED,
                       headers={"Retry-After": "1"})
