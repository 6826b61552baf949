"""Training settings and their defaults per dataset — one definition, read by training and the CLI.

No torch here: ``visionctl train --help`` shows these defaults on machines without PyTorch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

STRATEGIES = ("fc2", "fc1+fc2", "all")  # fine-tuning: which layers learn (visionctl.ml.training)
ARCHITECTURES = ("vgg", "net", "vgg-wide")  # visionctl.ml.model; "net" is the assignment's


@dataclass
class TrainConfig:
    dataset: str = "mnist"
    arch: str = "vgg"  # one of ARCHITECTURES
    epochs: int = 8
    batch_size: int = 64
    test_batch_size: int = 1000
    lr: float = 1.0  # Adadelta
    gamma: float = 0.7  # StepLR decay per epoch
    seed: int = 1
    threads: int = 2  # torch intra-op threads
    # Augmentation strength; 0 disables. Small affine jitter + stroke-width changes make the
    # network robust to how real images differ from MNIST after preprocessing.
    max_rotation: float = 10.0
    max_shift: float = 2.0
    scale_range: float = 0.1
    stroke_prob: float = 0.2
    hflip: bool = False
    # Other-writer conditions drawn fresh every batch (cheap tensor ops, unlike the rendered pool):
    # a ``lowres_prob`` share of each batch is area-averaged down to 7-20 px and re-upscaled (scans
    # and small crops), ``max_shear`` slants (x += shear·y) and ``max_stretch`` changes the aspect
    # (width × 1±stretch; low-resolution scanners often widened narrow glyphs).
    lowres_prob: float = 0.0
    max_shear: float = 0.0
    max_stretch: float = 0.0
    # A ``fresh_small`` share of each batch's train digits replaced by a small picture of the same
    # digit (6-24 px or an 8×8 scan), drawn afresh and preprocessed as served (MNIST only).
    fresh_small: float = 0.0
    # Likewise a ``fresh_small_outliers`` share of each batch's outliers replaced by a training outlier
    # family's picture shrunk to 8-16 px: small strokes that are not digits stay outliers.
    fresh_small_outliers: float = 0.0
    # Real-world robustness and outlier exposure: ``rendered`` train digits drawn as other writers and
    # devices deliver them (visionctl.ml.synth, through the serving preprocessing), ``font_digits``
    # printed digits from the train fonts, and ``outliers`` synthetic non-digits trained towards a
    # uniform prediction with weight ``outlier_weight`` (Hendrycks et al. 2019). 0 disables each.
    rendered: int = 24000
    font_digits: int = 6000
    outliers: int = 24000
    outlier_weight: float = 0.5
    # Fine-tuning
    init_weights: str | None = None
    strategy: str = "all"
    # Smoke runs: use only the first N train/test samples (0 = all)
    limit: int = 0
    data_dir: str | None = None

    def to_dict(self) -> dict:
        """What the model card records (where the data was read from is not part of the recipe). Knobs
        added after a release are recorded only when on, so the cards of recipes without them still
        read as the recipe that made them."""
        d = asdict(self)
        d.pop("data_dir")
        for name in RECORDED_WHEN_ON:
            if not d[name]:
                del d[name]
        return d


RECORDED_WHEN_ON = ("fresh_small", "fresh_small_outliers")


# Defaults per dataset: MNIST from scratch with digit-style augmentation; Fashion-MNIST
# fine-tuned from the MNIST weights with flips only (clothes are left/right symmetric, digits are
# not). Measured: flips + ±2 px shifts reached only 89.97 % after 5 epochs (too much regularisation
# for this small net in so few epochs), so shifts are off for Fashion. MNIST trains 6 epochs over
# a larger pool (55,000 digits + 30,000 renderings) rather than 8 over 60,000. Fashion keeps outlier
# exposure but no renderings: its real-world variants were already within ~1 point of its test
# accuracy, and the 2 shared cores are better spent on epochs. MNIST also draws low-resolution scans
# (15 % of each batch) and aspect changes (±25 %) fresh every batch: measured against the same recipe
# without them, other-writer accuracy 95.12 → 95.98 % (8×8 scans 82 → 89 %), MNIST test 99.31 → 99.35 %.
# Slant (max_shear) and a heavier share of 8×8/low-res renderings (RENDER_MIX) were measured too and
# left out: with them serif 1s / crossed 7s fell from 95.4 to 88.6 % (docs/model.md).
# Both were still learning after 6 epochs with γ 0.7 (MNIST train accuracy on augmented batches 94.8 %,
# Fashion test accuracy +0.4 pt over its last two epochs), so they train longer with a slower decay (the last
# epoch's learning rate stays ~0.15): MNIST 10 epochs at γ 0.8, Fashion 12 at γ 0.85 (docs/model.md).
# MNIST's seed is 2: seeds 1-3 of this recipe were trained and the rule written down before the last
# of them (highest held-out-mix accuracy, then most validation outliers caught) picked seed 2
# (docs/model.md, "Run-to-run spread"). A 0.4 share of fresh small digits reads small pictures better
# but alone let more small non-digits through; a 0.15 share of fresh small outliers beside it flags them
# again (docs/model.md, "Fresh small pictures in every batch").
PRESETS: dict[str, dict] = {
    "mnist": dict(epochs=10, gamma=0.8, lowres_prob=0.15, max_stretch=0.25, seed=2, fresh_small=0.4,
                  fresh_small_outliers=0.15),
    "fashion-mnist": dict(epochs=12, gamma=0.85, max_rotation=0.0, max_shift=0.0, scale_range=0.0,
                          stroke_prob=0.0, hflip=True, strategy="all",
                          rendered=0, font_digits=0, outliers=12000),
}


def make_config(dataset: str, **overrides) -> TrainConfig:
    """The dataset's preset with ``overrides`` on top (``None`` = keep the preset)."""
    values = dict(PRESETS.get(dataset, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = TrainConfig(dataset=dataset, **values)
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
    if cfg.fresh_small and cfg.dataset != "mnist":
        raise ValueError("fresh_small draws small pictures of digits: mnist only")
    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}")
    return cfg


def default_text(name: str) -> str:
    """A setting's default as ``--help`` shows it: one value, or one per dataset when presets differ
    (e.g. ``8 mnist, 6 fashion-mnist``)."""
    values = {dataset: getattr(make_config(dataset), name) for dataset in PRESETS}
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{value} {dataset}" for dataset, value in values.items())
