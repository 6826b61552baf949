"""Training and fine-tuning loops (pytorch/examples style, Adadelta + StepLR).

Whole datasets fit in memory as tensors (60k×28×28), so batches are sliced from a shuffled index
instead of going through a DataLoader: on 2 CPU cores the per-sample Python of a DataLoader costs
more than the model. Augmentation is batched on tensors for the same reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from visionctl.ml.data import get_spec, load_split, split_holdout
from visionctl.ml.model import Net, arch_of, build
from visionctl.ml.train_config import TrainConfig

MEAN, STD = 0.1307, 0.3081
OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
# Outlier families' shares in training (the rest weigh 1): stroke-like non-digits (mash-ups of
# digits, scribbles) are the hardest to tell from digits, so they get more of the batch.
# The glyph and turned-digit families are built but off (weight 0 leaves the other families' draws as
# they were): the shipped models trained without them (docs/model.md, "Not reached").
OUTLIER_MIX = {"digit-mashup": 3.0, "scribble": 2.0, "shapes": 1.5, "other-dataset": 2.0, "glyph": 0.0,
               "digit-turned": 0.0}
# Renderers' shares in the MNIST rendered pool (the rest weigh 1; empty = uniform, the shipped recipe).
RENDER_MIX: dict[str, float] = {}
# Of the fresh small pictures (TrainConfig.fresh_small), the share drawn 6-24 px; the rest are 8×8 scans.
FRESH_SMALL_LOWRES = 0.6


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,28,28) → normalised float32 (N,1,28,28)."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).float().div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def unit_to_tensor(images: np.ndarray) -> torch.Tensor:
    """float (N,28,28) in [0, 1] (what ``backend.model.preprocessing`` returns) → normalised (N,1,28,28)."""
    return torch.from_numpy(np.asarray(images, np.float32)).sub(MEAN).div_(STD).unsqueeze(1)


def load_other(dataset: str, data_dir: str | None, split: str = "train"):
    """The other dataset's split (the outlier source): from ``data_dir``, or its sibling folder."""
    from visionctl.ml.data import DatasetError
    other = OTHER[dataset]
    try:
        return load_split(other, split, data_dir)
    except DatasetError:
        if not data_dir:
            raise
        from pathlib import Path
        return load_split(other, split, str(Path(data_dir).parent))


class Pools(NamedTuple):
    """What training draws from besides the train digits: normalised tensors, and the outlier ``families``."""
    extra: torch.Tensor  # in-distribution renderings and font digits
    extra_labels: torch.Tensor
    outliers: torch.Tensor
    # The outlier families (renderers, probabilities) the pool was drawn from, for fresh small outliers.
    families: tuple[list, np.ndarray] | None


def build_pools(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, mode: str) -> Pools:
    """The extra in-distribution images and the outliers, rendered from the training part only
    (``images``/``labels``) and the other dataset's *train* file, preprocessed in ``mode`` as served."""
    from visionctl.ml import synth
    scale = min(1.0, cfg.limit / 20000) if cfg.limit else 1.0
    n_rend, n_font, n_out = (int(k * scale) for k in (cfg.rendered, cfg.font_digits, cfg.outliers))
    rng = np.random.default_rng(cfg.seed)
    extra, extra_y = [np.zeros((0, 28, 28), np.float32)], [np.zeros(0, np.int64)]
    if n_rend:
        pick = rng.choice(len(images), n_rend, replace=n_rend > len(images))
        renderers = synth.TRAIN_RENDERERS if cfg.dataset == "mnist" else synth.FASHION_RENDERERS
        extra.append(synth.render_digits(images[pick], labels[pick], cfg.seed, mode, renderers,
                                         RENDER_MIX if cfg.dataset == "mnist" else None))
        extra_y.append(labels[pick])
    if n_font:
        f, fy = synth.render_fonts(n_font, "train", cfg.seed, mode)
        extra.append(f)
        extra_y.append(fy)
    outliers, families = np.zeros((0, 28, 28), np.float32), None
    if (n_out and cfg.outlier_weight) or cfg.fresh_small_outliers:
        digits = (images, labels) if cfg.dataset == "mnist" else None
        families = synth.outlier_renderers(digits, load_other(cfg.dataset, cfg.data_dir).images, OUTLIER_MIX)
    if n_out and cfg.outlier_weight:
        outliers = synth.render_outliers(n_out, cfg.seed, mode, *families)
    return Pools(unit_to_tensor(np.concatenate(extra)), torch.from_numpy(np.concatenate(extra_y)),
                 unit_to_tensor(outliers), families)


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random affine (rotation, scale, shift), stroke thickening/thinning and flips, per sample."""
    n = x.shape[0]
    bg = -MEAN / STD  # value of a black pixel after normalisation
    if cfg.stroke_prob > 0:
        z = x - bg  # ≥ 0, background 0
        r = torch.rand(n, generator=gen)
        dil = F.max_pool2d(z, 3, 1, 1)
        ero = -F.max_pool2d(-z, 3, 1, 1)
        # Blend half-way so strokes grow/shrink by about a pixel, not a full 3×3 step.
        dil = 0.5 * (z + dil)
        ero = 0.5 * (z + ero)
        thick = (r < cfg.stroke_prob / 2).view(n, 1, 1, 1)
        thin = ((r >= cfg.stroke_prob / 2) & (r < cfg.stroke_prob)).view(n, 1, 1, 1)
        z = torch.where(thick, dil, torch.where(thin, ero, z))
        x = z + bg
    if cfg.hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    if cfg.lowres_prob > 0:
        x = lowres(x, cfg.lowres_prob, gen)
    if cfg.max_rotation or cfg.max_shift or cfg.scale_range or cfg.max_shear or cfg.max_stretch:
        angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(cfg.max_rotation)
        scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * cfg.scale_range
        shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (cfg.max_shift * 2 / 28)
        # Drawn only when on, so recipes without them keep their random stream (and their bits).
        shear = (torch.rand(n, generator=gen) * 2 - 1) * cfg.max_shear if cfg.max_shear else torch.zeros(n)
        stretch = (1 + (torch.rand(n, generator=gen) * 2 - 1) * cfg.max_stretch if cfg.max_stretch
                   else torch.ones(n))
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # theta maps output to input coordinates: rotation·scale, then 1/stretch on x and shear.
        a, b = cos / stretch, -sin + shear * cos
        c, d = sin / stretch, cos + shear * sin
        theta = torch.stack([torch.stack([a, b, shift[:, 0]], 1),
                             torch.stack([c, d, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg
    return x


def lowres(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """A ``prob`` share of the batch area-averaged to one random side (7-20 px), sometimes quantised
    to 17 or 2 levels, and upscaled back (bilinear or nearest) with its peak restored — what
    ``backend.model.preprocessing`` makes of an 8×8 scan or a thumbnail, seen fresh every batch."""
    bg = -MEAN / STD
    pick = torch.rand(x.shape[0], generator=gen) < prob
    if not pick.any():
        return x
    z = x[pick] - bg
    side = int(torch.randint(7, 21, (1,), generator=gen))
    small = F.adaptive_avg_pool2d(z, side)
    peak = z.amax((2, 3), keepdim=True).clamp_min(1e-6)
    levels = (0, 17, 2)[int(torch.randint(0, 3, (1,), generator=gen))]
    if levels:
        u = small / peak
        small = (torch.round(u * (levels - 1)) / (levels - 1) if levels > 2 else (u > 0.4).float()) * peak
    mode = "nearest" if torch.rand(1, generator=gen) < 0.3 else "bilinear"
    up = F.interpolate(small, size=x.shape[-2:], mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    up = up * (peak / up.amax((2, 3), keepdim=True).clamp_min(1e-6))
    x = x.clone()
    x[pick] = up + bg
    return x


def served_rows(batch: torch.Tensor, rows: np.ndarray, picture: Callable[[int], object],
                mode: str) -> torch.Tensor:
    """``batch`` (not changed) with each of ``rows`` replaced by ``picture(row)`` preprocessed as served
    and normalised. Pictures are drawn in row order, so a seeded draw gives the same batch."""
    from backend.model.preprocessing import preprocess
    if not len(rows):
        return batch
    batch = batch.clone()
    for j in rows:
        batch[j, 0] = unit_to_tensor(preprocess(picture(int(j)), mode)[None])[0, 0]
    return batch


def fresh_small_pictures(data: torch.Tensor, idx: torch.Tensor, raw: np.ndarray, share: float, mode: str,
                         rng: np.random.Generator) -> torch.Tensor:
    """``data`` (the augmented batch) with a ``share`` of the rows that are train digits (``idx`` below
    ``len(raw)``; rendered-pool rows are left alone) replaced by a small picture of the raw digit, drawn
    now and preprocessed as served. ~0.4 ms a picture: a few seconds an epoch at a 0.2 share."""
    from visionctl.ml import synth
    rows = np.flatnonzero((idx.numpy() < len(raw)) & (rng.random(len(idx)) < share))

    def picture(j: int):
        digit = raw[int(idx[j])]
        return synth.lowres(digit, rng) if rng.random() < FRESH_SMALL_LOWRES else synth.optdigits(digit, rng)
    return served_rows(data, rows, picture, mode)


def fresh_small_outliers(out: torch.Tensor, share: float, renderers: list, p: np.ndarray, mode: str,
                         rng: np.random.Generator) -> torch.Tensor:
    """``out`` (the augmented outlier batch) with a ``share`` of its rows replaced by a picture of an
    outlier family (drawn with probabilities ``p``) shrunk to 8-16 px, preprocessed as served."""
    from visionctl.ml import synth
    rows = np.flatnonzero(rng.random(len(out)) < share)
    return served_rows(out, rows, lambda _: synth.shrink(renderers[int(rng.choice(len(renderers), p=p))](rng), rng),
                       mode)


def set_trainable(model: Net, strategy: str) -> list[torch.nn.Parameter]:
    """Freeze what the fine-tuning strategy keeps fixed; return the parameters to optimise."""
    trainable = {"fc2": ("fc2",), "fc1+fc2": ("fc1", "fc2"), "all": None}[strategy]
    params = []
    for name, p in model.named_parameters():
        p.requires_grad = trainable is None or name.split(".")[0] in trainable
        if p.requires_grad:
            params.append(p)
    return params


@torch.no_grad()
def evaluate(model: Net, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict:
    """Loss, accuracy and per-class accuracy of ``model`` on (x, y)."""
    model.eval()
    loss, preds = 0.0, []
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        loss += F.nll_loss(out, y[i:i + batch_size], reduction="sum").item()
        preds.append(out.argmax(1))
    pred = torch.cat(preds)
    correct = pred.eq(y)
    per_class = [float(correct[y == c].float().mean()) if (y == c).any() else float("nan") for c in range(10)]
    return {"loss": loss / len(x), "accuracy": float(correct.float().mean()), "per_class_accuracy": per_class,
            "samples": len(x)}


class InitWeightsError(ValueError):
    """The weights to start from do not fit the architecture being trained."""


ProgressFn = Callable[[str, int, int, dict], None]


def train(cfg: TrainConfig, progress: ProgressFn | None = None) -> tuple[Net, dict, dict]:
    """Train (or fine-tune) per ``cfg``. Returns the model, test metrics and dataset checksums.

    ``progress(phase, done, total, stats)`` is called after every batch so the CLI can draw bars.
    """
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_split = load_split(cfg.dataset, "train", cfg.data_dir)
    test_split = load_split(cfg.dataset, "test", cfg.data_dir)
    fit, _ = split_holdout(train_split)  # the held-out tail fixes the OOD threshold at export
    fit_images, fit_labels = fit.images, fit.labels
    if cfg.limit:
        fit_images, fit_labels = fit_images[:cfg.limit], fit_labels[:cfg.limit]
    x_train, y_train = to_tensor(fit_images), torch.from_numpy(fit_labels)
    x_test, y_test = to_tensor(test_split.images), torch.from_numpy(test_split.labels)
    if cfg.limit:
        x_test, y_test = x_test[:cfg.limit], y_test[:cfg.limit]
    if progress:
        progress("rendering", 0, 1, {})
    mode = get_spec(cfg.dataset).preprocessing
    pools = build_pools(cfg, fit_images, fit_labels, mode)
    x_extra, y_extra, x_out = pools.extra, pools.extra_labels, pools.outliers
    if progress:
        progress("rendering", 1, 1, {"in": len(x_extra), "out": len(x_out)})
    x_train, y_train = torch.cat([x_train, x_extra]), torch.cat([y_train, y_extra])
    out_gen = torch.Generator().manual_seed(cfg.seed + 1)
    small_rng = np.random.default_rng([cfg.seed, 77])  # its own stream: the torch draws stay as they were
    small_out_rng = np.random.default_rng([cfg.seed, 78])
    out_batch = cfg.batch_size // 2

    model = build(cfg.arch)
    if cfg.init_weights:
        state = torch.load(cfg.init_weights, map_location="cpu", weights_only=True)
        try:
            found = arch_of(state)
        except ValueError as exc:
            raise InitWeightsError(f"{cfg.init_weights}: {exc}") from None
        if found != cfg.arch:
            raise InitWeightsError(f"{cfg.init_weights} holds {found} weights, not {cfg.arch} (--arch)")
        model.load_state_dict(state)
    params = set_trainable(model, cfg.strategy) if cfg.init_weights else list(model.parameters())
    optimizer = torch.optim.Adadelta(params, lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=cfg.gamma)

    n = len(x_train)
    batches = math.ceil(n / cfg.batch_size)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen)
        seen = correct = 0
        total_loss = 0.0
        start = time.perf_counter()
        for b in range(batches):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            data, target = augment(x_train[idx], cfg, gen), y_train[idx]
            if cfg.fresh_small:
                data = fresh_small_pictures(data, idx, fit_images, cfg.fresh_small, mode, small_rng)
            optimizer.zero_grad()
            if len(x_out):
                oidx = torch.randint(len(x_out), (out_batch,), generator=out_gen)
                outliers = augment(x_out[oidx], cfg, gen)
                if cfg.fresh_small_outliers:
                    outliers = fresh_small_outliers(outliers, cfg.fresh_small_outliers, *pools.families, mode,
                                                    small_out_rng)
                both = model(torch.cat([data, outliers]))
                output, out_lp = both[:len(idx)], both[len(idx):]
                # Cross-entropy to the uniform distribution: outliers get flat logits, so a low
                # logsumexp (high energy) and no confident class.
                loss = F.nll_loss(output, target) - cfg.outlier_weight * out_lp.mean()
            else:
                output = model(data)
                loss = F.nll_loss(output, target)
            loss.backward()
            optimizer.step()
            seen += len(idx)
            total_loss += loss.item() * len(idx)
            correct += int(output.argmax(1).eq(target).sum())
            if progress:
                progress(f"epoch {epoch}/{cfg.epochs}", b + 1, batches,
                         {"loss": total_loss / seen, "acc": correct / seen})
        scheduler.step()
        metrics = evaluate(model, x_test, y_test, cfg.test_batch_size)
        history.append({"epoch": epoch, "train_loss": total_loss / seen, "train_accuracy": correct / seen,
                        "test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"],
                        "seconds": round(time.perf_counter() - start, 1)})
        if progress:
            progress(f"epoch {epoch}/{cfg.epochs}", batches, batches,
                     {"loss": total_loss / seen, "acc": correct / seen, "test_acc": metrics["accuracy"]})
    metrics["history"] = history
    checksums = {**train_split.sha256, **test_split.sha256}
    return model, metrics, checksums
