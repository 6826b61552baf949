"""Evaluate shipped ONNX models: test-set accuracy, confusion matrix, mistakes, real-world variants.

Models are loaded by the backend's own loader (``backend.model.inference.load_model``: the card checks,
the sha256 check, the session options) and classified by the same ``Model`` method ``/predict``
calls — normalisation from the card, ONNX Runtime, softmax — so a number here is a number for the
service, not for a torch checkpoint or a second copy of the serving code. Real-world variants go
through ``backend.model.preprocessing.preprocess``, the function on the request path, for the same reason.
matplotlib is imported inside the plotting functions: it is a training/evaluation extra only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from backend.model import inference
from backend.model.preprocessing import preprocess
from visionctl.ml import variants as variants_mod
from visionctl.ml.data import load_split

# Images per ONNX Runtime run. /predict runs a request's images (up to 64) at once; larger runs here
# only amortise the per-run overhead — how rows are grouped changes results by float rounding at
# most (the classes are identical on both full test sets).
BATCH = 512


def load_model(name: str, models_dir: str | os.PathLike = "models") -> inference.Model:
    """The model as the backend loads it (without the batcher thread: evaluation calls it from one
    thread). FileNotFoundError says what to run; a card or ONNX file the server would refuse raises
    :class:`backend.errors.ModelLoadError`."""
    models_dir = Path(models_dir)
    for path in (models_dir / f"{name}.json", models_dir / f"{name}.onnx"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; run `visionctl train {name}` first or pass --models-dir")
    return inference.load_model(models_dir, name, batching=False)


def classify(model: inference.Model, images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) float32 in [0, 1] (or uint8 0-255, like the IDX test sets) → (N, 10) probabilities.

    ``Model.predict`` is what ``/predict`` calls on its preprocessed batch; it is called here in
    chunks of :data:`BATCH` images."""
    if images.dtype == np.uint8:
        images = images.astype(np.float32) * np.float32(1.0 / 255.0)
    if len(images) == 0:
        return np.zeros((0, len(model.card.labels)), np.float64)
    return np.concatenate([model.predict(images[i:i + BATCH]).probs for i in range(0, len(images), BATCH)])


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(classes, classes)


def evaluate_model(name: str, models_dir: str | os.PathLike = "models", data_dir: str | os.PathLike | None = None,
                   out_dir: str | os.PathLike = "docs/evaluation", limit: int = 0) -> dict:
    """Accuracy of the shipped ONNX model on the (first ``limit`` or all) test images.

    Writes ``<name>-confusion.png`` and ``<name>-mistakes.png`` (the most confident errors first:
    those are the ones worth looking at) into ``out_dir``.
    """
    model = load_model(name, models_dir)
    split = load_split(name, "test", data_dir)
    images, labels = split.images, split.labels
    if limit:
        images, labels = images[:limit], labels[:limit]
    names = list(model.card.labels)
    probs = classify(model, images)
    pred = probs.argmax(1)
    conf = probs.max(1)
    correct = pred == labels
    cm = confusion_matrix(labels, pred, len(names))
    per_class = {lab: float(cm[i, i] / cm[i].sum()) if cm[i].sum() else float("nan")
                 for i, lab in enumerate(names)}
    accuracy = float(correct.mean())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{name} {model.card.version}: {accuracy:.2%} on {len(labels)} test images"
    files = [plot_confusion(cm, names, out / f"{name}-confusion.png", title)]
    wrong = np.flatnonzero(~correct)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    files.append(plot_mistakes(images[wrong], labels[wrong], pred[wrong], conf[wrong], names,
                               out / f"{name}-mistakes.png", f"{name}: {len(wrong)} mistakes, most confident first"))
    return {"model": name, "model_version": model.card.version, "accuracy": accuracy,
            "samples": int(len(labels)), "errors": int(len(wrong)), "per_class_accuracy": per_class,
            "confusion": cm.tolist(), "files": [str(f) for f in files]}


# --- real-world variants --------------------------------------------------------------------


def preprocess_all(images: Iterable, mode: str) -> tuple[np.ndarray, float]:
    """Run ``preprocess`` over PIL images; returns the (N, 28, 28) stack and seconds spent inside it."""
    out, spent = [], 0.0
    for img in images:
        t = time.perf_counter()
        out.append(preprocess(img, mode))
        spent += time.perf_counter() - t
    return (np.stack(out) if out else np.zeros((0, 28, 28), np.float32)), spent


def evaluate_variants(name: str, models_dir: str | os.PathLike = "models", data_dir: str | os.PathLike | None = None,
                      limit: int = 0, seed: int = 0, only: Iterable[str] | None = None) -> dict:
    """Accuracy of ``render → preprocess → ONNX`` on each real-world variant of the test set.

    ``limit`` takes the first N test images (every variant renders the same images); ``only``
    restricts to the named variants. The raw test-set accuracy of the same ONNX model on the same
    images is reported alongside as the reference point.
    """
    model = load_model(name, models_dir)
    split = load_split(name, "test", data_dir)
    images, labels = split.images, split.labels
    if limit:
        images, labels = images[:limit], labels[:limit]
    reference = float((classify(model, images).argmax(1) == labels).mean())
    chosen = (variants_mod.variants_for(name) if only is None
              else [variants_mod.get_variant(name, v) for v in only])  # unknown names raise ValueError
    rows = []
    for v in chosen:
        t0 = time.perf_counter()
        x, pre_s = preprocess_all(variants_mod.render(images, name, v.name, seed), model.card.preprocessing)
        total_s = time.perf_counter() - t0
        pred = classify(model, x).argmax(1)
        rows.append({"variant": v.name, "description": v.description,
                     "accuracy": float((pred == labels).mean()), "samples": int(len(labels)),
                     "errors": int((pred != labels).sum()),
                     "preprocess_us": 1e6 * pre_s / max(len(labels), 1),
                     "render_us": 1e6 * (total_s - pre_s) / max(len(labels), 1)})
    return {"model": name, "model_version": model.card.version, "preprocessing": model.card.preprocessing,
            "seed": seed, "samples": int(len(labels)), "test_accuracy": reference, "variants": rows}


# --- pictures -------------------------------------------------------------------------------


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")  # headless: no display in CI or containers
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=100)


def plot_confusion(cm: np.ndarray, labels: list[str], path: Path, title: str) -> Path:
    """Heat map of counts (log colour scale so single errors stay visible next to ~1000 hits)."""
    plt, fig = _figure(8, 7)
    from matplotlib.colors import LogNorm

    ax = fig.add_subplot()
    im = ax.imshow(np.maximum(cm, 0.5), cmap="Blues", norm=LogNorm(vmin=0.5, vmax=max(cm.max(), 1)))
    n = len(labels)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 8 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_mistakes(images: np.ndarray, truth: np.ndarray, pred: np.ndarray, conf: np.ndarray,
                  labels: list[str], path: Path, title: str, max_items: int = 48, cols: int = 8) -> Path:
    """Grid of misclassified images captioned ``true → predicted (confidence)``."""
    k = min(len(images), max_items)
    rows = max(1, -(-k // cols))
    plt, fig = _figure(cols * 1.5, rows * 1.7 + 0.5)
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
        ax.set_title(f"{labels[truth[i]]}→{labels[pred[i]]}\n{conf[i]:.0%}", fontsize=7)
        ax.axis("off")
    if k == 0:
        fig.text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_variant_examples(name: str, data_dir: str | os.PathLike | None, path: Path, mode: str,
                          count: int = 6, seed: int = 0) -> Path:
    """For each variant: what the user sends (top) and what the model sees after preprocessing."""
    split = load_split(name, "test", data_dir)
    chosen = variants_mod.variants_for(name)
    plt, fig = _figure(count * 1.3, len(chosen) * 2.4 + 0.4)
    for r, v in enumerate(chosen):
        for c, img in enumerate(variants_mod.render(split.images[:count], name, v.name, seed)):
            sent = fig.add_subplot(2 * len(chosen), count, 2 * r * count + c + 1)
            # Checkerboard behind transparency so transparent canvases look transparent.
            sent.imshow(_checker(img.size), cmap="gray", vmin=0, vmax=1)
            sent.imshow(img.convert("RGBA"))
            sent.set_xticks([])  # keep the frame: white-background images need their edges shown
            sent.set_yticks([])
            if c == 0:
                sent.set_title(f"{v.name} ({img.mode} {img.size[0]}×{img.size[1]})", fontsize=7, loc="left")
            seen = fig.add_subplot(2 * len(chosen), count, (2 * r + 1) * count + c + 1)
            seen.imshow(preprocess(img, mode), cmap="gray", vmin=0, vmax=1)
            seen.axis("off")
    fig.suptitle(f"{name}: sent (top) → preprocessed 28×28 (bottom)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _checker(size: tuple[int, int]) -> np.ndarray:
    """Light-grey checkerboard (8 cells across the short side), values in [0, 1]."""
    w, h = size
    cell = max(1, min(w, h) // 8)
    yy, xx = np.mgrid[0:h, 0:w] // cell
    return 0.75 + 0.15 * ((yy + xx) % 2)
