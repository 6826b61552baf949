"""The model card (``<dir>/<name>.json``): its schema, and the one way to build, write and read it.

A card travels with every ONNX artifact and is the single source of truth for labels, normalisation,
preprocessing mode and version. Export builds and writes it here, and the backend, evaluation and
the CLI read it here, so a card that export can write is exactly a card the server accepts.

Standard library only: the backend image carries it, and the training side imports it without
pulling in ONNX Runtime. ``docs/model-card.schema.json`` describes the same format for other tools.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.contract import PREPROCESSING_MODES
from backend.errors import ModelLoadError

OUTPUT_KINDS = ("log_softmax", "softmax", "logits")
NUM_CLASSES = 10
IMAGE_SIDE = 28
INPUT_SPEC = {"shape": [None, 1, IMAGE_SIDE, IMAGE_SIDE], "dtype": "float32", "layout": "NCHW",
              "color": "grayscale, light object on dark background"}


class CardError(ModelLoadError):
    """A model card is unreadable or inconsistent; the message starts with the card's path."""


@dataclass(frozen=True)
class OodSpec:
    """The out-of-distribution verdict the graph's second output supports (card section ``ood``).

    ``in_distribution = score <= threshold``; the threshold was fixed at export on held-out
    in-distribution images (``fitted_on``) so that ``target_in_distribution`` of them pass.
    ``baseline`` is what those held-out images looked like in service terms (share flagged, share
    per predicted class): the reference drift alerts compare live traffic with.
    """

    method: str
    output: str
    threshold: float
    fitted_on: str
    target_in_distribution: float
    baseline_ood_share: float
    baseline_class_share: dict[str, float]


@dataclass(frozen=True)
class ModelCard:
    """The fields the service acts on, parsed and checked; ``raw`` is the whole card as written."""

    name: str
    version: str
    labels: tuple[str, ...]
    preprocessing: str
    mean: float
    std: float
    input_name: str
    output_name: str
    output_kind: str
    ood: OodSpec
    raw: dict  # the whole card, served by GET /v1/models/<name>

    @property
    def ood_output(self) -> str:
        return self.ood.output

    @property
    def ood_threshold(self) -> float:
        return self.ood.threshold

    @property
    def ood_method(self) -> str:
        return self.ood.method

    @property
    def ood_baseline(self) -> dict:
        return {"ood_share": self.ood.baseline_ood_share, "class_share": dict(self.ood.baseline_class_share)}

    def to_dict(self) -> dict:
        """A copy of the card as it is (or will be) on disk."""
        return copy.deepcopy(self.raw)

    def artifact_sha256(self, kind: str) -> str | None:
        """The recorded sha256 of ``artifacts.<kind>`` (``"onnx"``, ``"pt"``), if the card has one."""
        return ((self.raw.get("artifacts") or {}).get(kind) or {}).get("sha256")

    def summary(self) -> dict:
        """What GET /v1/models lists: enough for a client to label and display results."""
        metrics = self.raw.get("metrics") or {}
        return {
            "name": self.name,
            "version": self.version,
            "description": self.raw.get("description", ""),
            "labels": list(self.labels),
            "test_accuracy": metrics.get("test_accuracy"),
            "input": self.raw.get("input"),
        }

    def detail(self) -> dict:
        """GET /v1/models/<name>: the summary plus per-class accuracy, the out-of-distribution verdict's
        method, threshold and baseline, and provenance."""
        metrics = self.raw.get("metrics") or {}
        return {
            **self.summary(),
            "per_class_accuracy": metrics.get("per_class_accuracy"),
            "test_samples": metrics.get("test_samples"),
            "output": self.raw.get("output"),
            "ood": self.raw.get("ood"),
            "normalization": self.raw.get("normalization"),
            "created": self.raw.get("created"),
            "artifacts": self.raw.get("artifacts"),
        }


def parse(raw: dict, source: str) -> ModelCard:
    """Check a card's content and return it parsed; ``source`` (its path) prefixes every error."""
    if not isinstance(raw, dict):
        raise CardError(f"{source}: model card must be a JSON object")
    try:
        labels = tuple(str(x) for x in raw["labels"])
        card = ModelCard(
            name=str(raw["name"]), version=str(raw["version"]), labels=labels,
            preprocessing=str(raw["input"]["preprocessing"]),
            mean=float(raw["normalization"]["mean"]), std=float(raw["normalization"]["std"]),
            input_name=str(raw["input"]["name"]), output_name=str(raw["output"]["name"]),
            output_kind=str(raw["output"].get("kind", "log_softmax")), ood=_parse_ood(raw, source), raw=raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CardError(f"{source}: malformed model card ({type(exc).__name__}: {exc})") from None
    if len(labels) != NUM_CLASSES:
        raise CardError(f"{source}: expected {NUM_CLASSES} labels, found {len(labels)}")
    if card.preprocessing not in PREPROCESSING_MODES:
        raise CardError(f"{source}: input.preprocessing must be one of {PREPROCESSING_MODES}, "
                        f"not {card.preprocessing!r}")
    if not card.std > 0:
        raise CardError(f"{source}: normalization.std must be > 0")
    if card.output_kind not in OUTPUT_KINDS:
        raise CardError(f"{source}: unknown output.kind {card.output_kind!r}")
    if card.ood.output == card.output_name:
        raise CardError(f"{source}: ood.output must differ from output.name ({card.output_name!r})")
    if set(card.ood.baseline_class_share) != set(labels):
        raise CardError(f"{source}: ood.baseline.class_share must have one share per label")
    return card


def _parse_ood(raw: dict, source: str) -> OodSpec:
    """The ``ood`` section; every served model gives a verdict, so a card without one is refused."""
    if "ood" not in raw:
        raise CardError(f"{source}: model card has no 'ood' section (out-of-distribution output and "
                        "threshold); re-export the model with this version of `visionctl export`")
    ood = raw["ood"]
    baseline = ood["baseline"]
    spec = OodSpec(method=str(ood["method"]), output=str(ood["output"]), threshold=float(ood["threshold"]),
                   fitted_on=str(ood["fitted_on"]), target_in_distribution=float(ood["target_in_distribution"]),
                   baseline_ood_share=float(baseline["ood_share"]),
                   baseline_class_share={str(k): float(v) for k, v in baseline["class_share"].items()})
    if not math.isfinite(spec.threshold):
        raise CardError(f"{source}: ood.threshold must be a finite number")
    if not 0 < spec.target_in_distribution <= 1:
        raise CardError(f"{source}: ood.target_in_distribution must be in (0, 1]")
    return spec


def read(path: str | os.PathLike) -> ModelCard:
    """Read and check ``<dir>/<name>.json``. A card file is named after its model: a card whose
    ``name`` differs from the file's stem is refused (a copied or renamed card would serve wrong labels)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CardError(f"{path}: unreadable model card ({exc})") from None
    card = parse(raw, str(path))
    expected = path.name.removesuffix(".json")
    if card.name != expected:
        raise CardError(f"{path}: card is for model {card.name!r}, expected {expected!r}")
    return card


def read_raw(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path`` without any checks, or None: only for carrying provenance from a
    card about to be replaced (which may predate a field this version requires)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def build(*, name: str, labels: Sequence[str], preprocessing: str, mean: float, std: float,
          input_name: str, output_name: str, output_kind: str = "log_softmax",
          accuracy: float, samples: int, per_class_accuracy: Sequence[float], history: list | None = None,
          data_sha256: Mapping[str, str], training: dict, export: dict,
          artifacts: Mapping[str, tuple[str, str]], created: dt.datetime, ood: Mapping,
          description: str = "") -> ModelCard:
    """Assemble a card (checked as :func:`read` would check it) from what training and export know.

    ``artifacts`` maps a kind (``"onnx"``, ``"pt"``) to ``(file name, sha256)``; the version is the
    creation date plus the ONNX file's hash, so two exports of different weights never share one.
    Key order is the file's layout, which the shipped cards already have. ``ood`` is the card's
    ``ood`` section as written (see :class:`OodSpec` for its meaning).
    """
    created = created.replace(microsecond=0)
    onnx_sha = artifacts["onnx"][1]
    raw = {
        "name": name,
        "version": f"{created:%Y.%m.%d}-{onnx_sha[:8]}",
        "description": description,
        "labels": list(labels),
        "input": {"name": input_name, **copy.deepcopy(INPUT_SPEC), "preprocessing": preprocessing},
        "output": {"name": output_name, "shape": [None, NUM_CLASSES], "kind": output_kind},
        "normalization": {"mean": mean, "std": std},
        "metrics": {
            "test_accuracy": round(accuracy, 6),
            "test_samples": samples,
            "per_class_accuracy": {label: round(a, 6)
                                   for label, a in zip(labels, per_class_accuracy, strict=True)},
            "history": list(history or []),
        },
        "data": {"dataset": name, "sha256": dict(data_sha256)},
        "training": training,
        "export": export,
        "ood": copy.deepcopy(dict(ood)),
        "artifacts": {kind: {"file": file, "sha256": sha} for kind, (file, sha) in artifacts.items()},
        "created": created.isoformat(),
    }
    return parse(raw, f"model card for {name!r}")


def dumps(card: ModelCard) -> bytes:
    """The file's bytes: 2-space indented, ASCII-escaped JSON and a final newline."""
    return (json.dumps(card.raw, indent=2) + "\n").encode()


def write(path: str | os.PathLike, card: ModelCard) -> None:
    """Write ``card`` to ``path`` atomically (a reader sees the old card or the new one, never half)."""
    write_atomic(Path(path), dumps(card))


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` via a temporary file in the same folder (the ONNX and .pt
    artifacts the card names are written the same way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; images run as a non-root user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_artifact(card: ModelCard, kind: str, data: bytes, path: str | os.PathLike) -> None:
    """Refuse ``data`` (the bytes of ``path``) if the card records a different sha256 for ``kind``.
    A card without a hash accepts anything: hand-made test cards need not carry one."""
    expected = card.artifact_sha256(kind)
    if expected and sha256_bytes(data) != expected:
        raise CardError(f"{path}: sha256 does not match the model card (stale or partial copy?)")
