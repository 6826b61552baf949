"""Real-world image → the 28×28 float32 array the models were trained on.

Users send canvas drawings with transparent backgrounds, phone photos of paper, scans and tiny
crops; the models only know MNIST/Fashion-MNIST. Each step below undoes one way a real image differs
from those datasets, in the same order the datasets were made:

1. ``to_grayscale``   any PIL mode → 8-bit luminance, transparency composited onto a backdrop
                      that contrasts with the drawn pixels (the transparent part is the background).
   ``undo_block_upscale`` a small picture a client enlarged by pixel repetition (nearest
                      neighbour: an 8×8 scan sent as 64×64 blocks) is taken back to its cells, so
                      that it is treated as the small picture it is.
   ``upsample_small`` a picture smaller than the 20-px digit box (an 8×8 scan, a tiny crop) is
                      enlarged smoothly first, so the steps below see strokes rather than cells.
2. ``estimate_levels`` polarity and black/white points from a small thumbnail: the border tells
                      the background; dark-on-light is inverted; sensor/JPEG noise is clipped away.
3. ``apply_levels``   one 256-entry lookup table (runs in C) → light object on a zero background.
4. ``fit_digit``      (MNIST) crop to the ink, fit into 20×20 keeping aspect, centre of mass at the
                      centre of 28×28 — how LeCun et al. normalised NIST digits. On the way,
                      ``normalise_stroke`` brings pen/brush stroke widths into MNIST's range.
   ``fit_frame``      (Fashion-MNIST) trim the background, longest edge to 28, centred — how
                      Zalando made Fashion-MNIST (they trimmed edges close to the corner colour).

Everything per pixel runs inside PIL or numpy; full-resolution pixels are touched only by the
colour conversion, the lookup table, the bounding box and the crop's resize (statistics come from
a ≤96 px thumbnail). Measured on 2 cores: ~0.2 ms for a 28×28 PNG, ~2 ms for a 1000×1000 RGB JPEG
photo (benchmarks/variants.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageFilter

from backend.contract import DIGIT, FRAME, PREPROCESSING_MODES
from backend.model.card import IMAGE_SIDE

SIZE = IMAGE_SIDE         # model input side
DIGIT_BOX = 20            # MNIST digits were fitted into 20×20 ...
DIGIT_CENTRE = 14.0       # ... then shifted so the centre of mass lands here (measured: 13.99, 14.01)

# Pictures whose longer side is under SMALL_SIDE are upsampled bicubically by a whole factor to at
# least UPSAMPLE_SIDE first. At 8×8 one cell is an eighth of the digit: the border ring that gives the
# background is one cell wide and holds ink, the ink box's cut drops faint edge cells whole, and the
# stroke measure sees blocks. Interpolating the cells back into a smooth field first read 8×8
# optdigits-style scans at 94.5 % instead of 91.5 % with the same weights (docs/model.md).
SMALL_SIDE = DIGIT_BOX
UPSAMPLE_SIDE = 56
# A picture up to this side is checked for blocks (pixel repetition of a picture under SMALL_SIDE):
# an 8×8 scan repeated 128 times. Larger ones cost more to check than clients send that way.
BLOCKS_MAX_SIDE = 1024
BLOCKS_CHECKS = 3         # candidate grids compared pixel by pixel before giving up

STATS_SIDE = 96           # levels are estimated on a thumbnail no larger than this
MIN_CONTRAST = 0.12       # object vs background difference below this = blank image ...
# ... unless it stands FAINT_SNR times clear of the picture's pixel noise: a picture saved with its
# values unscaled (optdigits' 0-16 ink counts as grey levels 0-16, a 0/1 mask) is a drawing no eye
# sees, and it was read as blank (such scans enlarged smoothly to 28 px: 8.9 % read right, all
# flagged; benchmarks/small_pictures.py). Noise alone reaches about 4 sigmas over a thumbnail's 9,216
# pixels; 8-bit levels show no noise below half a step, so a faint drawing needs 4 grey levels at least.
FAINT_SNR = 8.0
NOISE_FLOOR = 0.5 / 255.0
# Background noise kept below black = median + this many robust sigmas. Digits are binary ink, so
# a high floor costs nothing and keeps paper grain out; garments have faint tonal detail close to
# the backdrop that a high floor would erase (measured on the photo-jpeg variants: Fashion 86→90 %
# going 3→1 sigma, MNIST 99.0→97.8 %).
NOISE_SIGMAS = {DIGIT: 3.0, FRAME: 1.0}
INK_THRESHOLD = 0.2       # "digit": pixels above this (after levels) count as ink for the crop
FRAME_THRESHOLD = 0.06    # "frame": Fashion-MNIST trimmed what was within ~5 % of the corner colour
SPECK_SHARE = 0.02        # a separate blob with under 2 % of the ink is dust, not part of the object
STROKE_SCALE = 4          # "digit": stroke width is measured and adjusted at 4× the 20-px box
STROKE_MIN, STROKE_MAX = 1.6, 2.6  # MNIST stroke width range in the 20-px box (see normalise_stroke)

_ZEROS = np.zeros((SIZE, SIZE), np.float32)
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


def _pixels(img: Image.Image, dtype=np.uint8) -> np.ndarray:
    """An ``L`` image as a (height, width) array: ``np.asarray(img, dtype)`` without its detour
    through ``__array_interface__`` (~1 µs for uint8, ~3 µs for float32, several times per image)."""
    a = np.frombuffer(img.tobytes(), np.uint8).reshape(img.height, img.width)
    return a if dtype is np.uint8 else a.astype(dtype)


def preprocess(img: Image.Image, mode: str) -> np.ndarray:
    """Return float32 (28, 28) in [0, 1], light object on black, ready for ``(x - mean) / std``.

    ``mode`` is the model card's ``input.preprocessing``: ``"digit"`` or ``"frame"``. Blank,
    fully transparent or featureless images give all zeros rather than an error.
    """
    if mode not in PREPROCESSING_MODES:
        raise ValueError(f"unknown preprocessing mode {mode!r}; expected one of {PREPROCESSING_MODES}")
    gray = to_grayscale(img)
    if gray is None:
        return _ZEROS.copy()
    gray = upsample_small(undo_block_upscale(gray))
    levels = estimate_levels(gray, NOISE_SIGMAS[mode])
    if levels is None:
        return _ZEROS.copy()
    ink = apply_levels(gray, levels)
    return fit_digit(ink) if mode == DIGIT else fit_frame(ink)


# ---------------------------------------------------------------------------------------------
# 1. colour → luminance, transparency composited


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """I;16 / I / F → L. PIL's own conversion clips instead of scaling, so scale by the bit depth."""
    a = np.asarray(img, dtype=np.float32)
    if img.mode.startswith("I;16"):
        scale = 65535.0
    elif img.mode == "F" and float(a.max(initial=0.0)) <= 1.0:
        scale = 1.0               # float images are usually already in [0, 1]
    else:                         # "I" holds 8- or 16-bit data depending on the decoder
        scale = 65535.0 if float(a.max(initial=0.0)) > 255.0 else 255.0
    return Image.fromarray(np.clip(a * (255.0 / scale) + 0.5, 0, 255).astype(np.uint8), "L")


def _thumbnail(img: Image.Image, side: int = STATS_SIDE) -> Image.Image:
    """Box-averaged (area) reduction: fast, and averages away isolated noise pixels."""
    factor = -(-max(img.size) // side)  # ceil
    return img.reduce(factor) if factor > 1 else img


def to_grayscale(img: Image.Image) -> Image.Image | None:
    """Any PIL mode → ``L``; None when nothing is visible (fully transparent).

    Transparent pixels are the background: they are composited onto white if the visible pixels are
    mostly dark, else onto black, so the drawing always contrasts with its background whatever
    hidden colour the transparent pixels carry (canvases store them as transparent black).
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_depth_to_l(img)
    if img.mode == "LAB":
        return img.getchannel(0)  # lightness; PIL cannot convert LAB to L directly
    if not _has_alpha(img):
        if img.mode == "L":
            return img
        if img.mode in ("1", "RGB", "CMYK", "YCbCr", "P"):
            return img.convert("L")
        return img.convert("RGB").convert("L")  # HSV and other rare modes
    la = img.convert("RGBA").convert("LA") if img.mode in ("P", "RGB", "PA") else img.convert("LA")
    lum, alpha = la.split()
    lo, hi = alpha.getextrema()
    if hi == 0:
        return None
    if lo == 255:
        return lum
    small_l = _pixels(_thumbnail(lum), np.float32)
    small_a = _pixels(_thumbnail(alpha), np.float32)
    visible_mean = float((small_l * small_a).sum() / max(small_a.sum(), 1.0))
    backdrop = Image.new("L", img.size, 255 if visible_mean < 128 else 0)
    return Image.composite(lum, backdrop, alpha)


# The source line of line i when a nearest-neighbour enlargement takes n lines to N: PIL samples at
# pixel centres, OpenCV and index scaling at corners; where a sample falls exactly on a cell edge,
# float arithmetic sends it either way (PIL does both within one picture), so both are allowed here
# and the candidate grid is then checked exactly.
_NEAREST_SOURCES = (lambda i, n, N: ((2 * i + 1) * n - 1) // (2 * N), lambda i, n, N: (2 * i + 1) * n // (2 * N),
                    lambda i, n, N: np.maximum(i * n - 1, 0) // N, lambda i, n, N: i * n // N)
_CELL_COUNTS = np.arange(2, SMALL_SIDE)[:, None]


def _cell_counts(changes: np.ndarray, side: int) -> set[int]:
    """Cell counts ``n`` (under ``SMALL_SIDE``, cells ≥ 2 px) whose nearest-neighbour enlargement
    to ``side`` could put every change between neighbouring lines (line ``p`` ≠ ``p + 1``) on a
    cell edge."""
    on_edge = np.zeros((len(_CELL_COUNTS), len(changes)), bool)
    for source in _NEAREST_SOURCES:
        on_edge |= source(changes + 1, _CELL_COUNTS, side) != source(changes, _CELL_COUNTS, side)
    return set(_CELL_COUNTS[(_CELL_COUNTS[:, 0] * 2 <= side) & on_edge.all(axis=1), 0].tolist())


def _enlarges_to(cells: np.ndarray, a: np.ndarray) -> bool:
    """Whether a nearest-neighbour enlargement of ``cells`` (PIL's, or index scaling's) is ``a``."""
    (ny, nx), (h, w) = cells.shape, a.shape
    pil = _pixels(Image.fromarray(cells, "L").resize((w, h), Image.NEAREST))
    return np.array_equal(pil, a) or np.array_equal(cells[np.ix_(np.arange(h) * ny // h, np.arange(w) * nx // w)], a)


def undo_block_upscale(gray: Image.Image) -> Image.Image:
    """The cells of a picture that is a nearest-neighbour enlargement of one under ``SMALL_SIDE``
    (each cell at least 2×2 px), or the picture itself.

    Blocks hide a small picture from ``upsample_small``, and the steps after it then work on hard
    cell edges: the 8×8 optdigits-style scans a client sent as blocks were read at 89.5 % against
    94.4 % once taken back to their cells (same weights; docs/model.md). The test is exact: the
    cells must enlarge back to the same pixels, so nothing is lost, and a lossy (JPEG) copy is left
    alone. None of MNIST's and Fashion-MNIST's 140,000 images is taken for blocks (measured; a test
    checks the two test files). At most ``BLOCKS_CHECKS`` grids are checked pixel by pixel, so a
    crafted picture costs a few enlargements at most."""
    w, h = gray.size
    if not SMALL_SIDE <= max(w, h) <= BLOCKS_MAX_SIDE or min(w, h) < 4:
        return gray
    if w * h > 4096:  # a photo has more changes along its middle row than a small picture can have
        middle = _pixels(gray.crop((0, h // 2, w, h // 2 + 1)))[0]
        if np.count_nonzero(middle[1:] != middle[:-1]) >= SMALL_SIDE - 1:
            return gray
    a = _pixels(gray)
    dy = np.flatnonzero((a[1:] != a[:-1]).any(axis=1))
    if not 0 < len(dy) < SMALL_SIDE - 1:
        return gray
    dx = np.flatnonzero((a[:, 1:] != a[:, :-1]).any(axis=0))
    if not 0 < len(dx) < SMALL_SIDE - 1:
        return gray
    nys, checks = _cell_counts(dy, h), 0
    for nx in sorted(_cell_counts(dx, w)):
        # The same enlargement on both axes, up to each side's rounding.
        ny = min(nys, key=lambda n: abs(n * w - nx * h), default=0)
        if not ny or abs(ny * w - nx * h) >= w:
            continue
        # A scan's neighbouring cells mostly differ along one axis at least; a flat drawing (a filled
        # rectangle) fits a coarse grid with few changes and gains nothing from being taken to it.
        if max(len(dx) / nx, len(dy) / ny) < 0.5:
            continue
        # Each cell's middle line: inside the cell under either rule, away from any tie.
        cells = np.ascontiguousarray(a[np.ix_((2 * np.arange(ny) + 1) * h // (2 * ny),
                                              (2 * np.arange(nx) + 1) * w // (2 * nx))])
        if _enlarges_to(cells, a):
            return Image.fromarray(cells, "L")
        checks += 1
        if checks == BLOCKS_CHECKS:
            break
    return gray


def upsample_small(gray: Image.Image) -> Image.Image:
    """An ``L`` image under ``SMALL_SIDE`` on its longer side, enlarged bicubically by the whole
    factor that brings that side to at least ``UPSAMPLE_SIDE``; larger images come back as they are."""
    longer = max(gray.size)
    if longer >= SMALL_SIDE:
        return gray
    k = -(-UPSAMPLE_SIDE // longer)
    return spread_faint(gray).resize((gray.width * k, gray.height * k), Image.BICUBIC)


def spread_faint(small: Image.Image) -> Image.Image:
    """A faint small picture (optdigits' 0-16 ink counts saved as grey levels 0-16) with its range
    spread over 0-255, so interpolation does not work on a few steps; others come back as they are.

    Too small for its border to tell noise from a drawing (an 8×8 scan's ring is mostly ink), it is
    taken at the range it uses. Otherwise it was blank: such scans read 8.9 % right, all flagged."""
    lo, hi = small.getextrema()
    return small.point(_range_lut(lo, hi)) if 0 < hi - lo < MIN_CONTRAST * 255 else small


@cache
def _range_lut(lo: int, hi: int) -> Table:
    """``lo``..``hi`` mapped linearly onto 0..255."""
    return Table([min(255, max(0, (v - lo) * 255 // (hi - lo))) for v in range(256)])


# ---------------------------------------------------------------------------------------------
# 2.-3. polarity and levels


@dataclass(frozen=True)
class Levels:
    invert: bool   # dark object on light background
    black: float   # background level (after inversion), in [0, 1]; maps to 0
    white: float   # object level (after inversion), in [0, 1]; maps to 1


def _border(a: np.ndarray) -> np.ndarray:
    """The outer ring (≈5 % of the short side, at least one pixel): where the background is."""
    h, w = a.shape
    k = max(1, min(h, w) // 20)
    if h <= 2 * k or w <= 2 * k:
        return a.ravel()
    return np.concatenate([a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()])


def _background(ring: np.ndarray) -> tuple[float, float]:
    """The background level of a border ring and its noise (robust sigma; exactly 0 when digital)."""
    if ring.min() == ring.max():  # clean digital background (MNIST, canvases): no medians needed
        return float(ring[0]), 0.0
    bg = float(np.median(ring))
    return bg, 1.4826 * float(np.median(np.abs(ring - bg)))


def pixel_noise(a: np.ndarray) -> float:
    """Robust sigma of the noise from neighbouring pixels' differences (0 for a clean digital picture,
    however much of it is ink): unlike the border ring's, it does not mistake a drawing for noise."""
    diffs = np.abs(np.diff(a, axis=1)).ravel()
    return 1.4826 * float(np.median(diffs)) / np.sqrt(2.0) if diffs.size else 0.0


def estimate_levels(gray: Image.Image, noise_sigmas: float = NOISE_SIGMAS[DIGIT]) -> Levels | None:
    """Polarity and black/white points of an ``L`` image; None if it has no visible object.

    The background is the median of the border ring (a median shrugs off JPEG ringing, noise and
    the odd stroke touching the edge). Whichever extreme lies farther from it is the object: if that
    is the dark end, the image is dark-on-light and gets inverted. Black sits ``noise_sigmas`` robust
    sigmas (median absolute deviation of the ring) above the background so paper grain and sensor
    noise map to exactly 0.
    """
    a = _pixels(_thumbnail(gray), np.float32) * (1.0 / 255.0)
    ring = _border(a)
    bg, sigma = _background(ring)
    lo, hi = float(a.min()), float(a.max())
    invert = (bg - lo) > (hi - bg)
    if invert:
        bg, white = 1.0 - bg, 1.0 - lo
    else:
        white = hi
    contrast = white - bg
    if contrast < MIN_CONTRAST and contrast < FAINT_SNR * max(pixel_noise(a), NOISE_FLOOR):
        return None
    black = bg + min(noise_sigmas * sigma + 1.0 / 255.0, 0.5 * contrast)
    return Levels(invert=invert, black=black, white=white)


def apply_levels(gray: Image.Image, levels: Levels) -> Image.Image:
    """Map the ``L`` image so the background is 0 and the object 255, via one lookup table."""
    # Levels quantised to 1/1024 so recurring ones (clean backgrounds) reuse a cached table.
    return gray.point(_levels_lut(levels.invert, round(levels.black * 1024), round(levels.white * 1024)))


class Table(Image.ImagePointHandler):
    """A 256-entry lookup table for ``L`` images, ready to apply: ``img.point(table)``.

    ``Image.point(list)`` re-rounds all 256 entries in Python on every call (~30 µs, more than the
    lookup itself on a small image); the tables here are integers already and cached, so they go
    straight to the C lookup — the same call ``Image.point`` ends with (Pillow internals: the
    result is checked against the public path in tests/backend/test_hot_path.py).
    """

    __slots__ = ("values",)

    def __init__(self, values: list[int]):
        self.values = values

    def point(self, im: Image.Image) -> Image.Image:
        return im._new(im.im.point(self.values, None))


@lru_cache(maxsize=4096)
def _levels_lut(invert: bool, black_q: int, white_q: int) -> Table:
    x = np.arange(256, dtype=np.float32) * (1.0 / 255.0)
    if invert:
        x = 1.0 - x
    black, white = black_q / 1024, white_q / 1024
    y = np.clip((x - black) / max(white - black, 1.0 / 1024), 0.0, 1.0)
    return Table((y * 255.0 + 0.5).astype(np.uint8).tolist())


# ---------------------------------------------------------------------------------------------
# 4. geometry


def _bbox(ink: Image.Image, threshold: float) -> tuple[int, int, int, int] | None:
    """Bounding box of pixels brighter than ``threshold`` (PIL does the scan in C)."""
    return ink.point(_threshold_lut(int(threshold * 255))).getbbox()


def _main_span(profile: np.ndarray) -> tuple[int, int]:
    """[start, end) of the runs of a projection profile that carry real mass.

    Runs are separated by empty lines; a run with under ``SPECK_SHARE`` of the mass is a speck (dust,
    a paper fibre, a JPEG blotch) unless it is all there is.
    """
    idx = np.flatnonzero(profile)
    if idx[-1] - idx[0] + 1 == len(idx):  # one run, no gap: the common case, skip the split
        return int(idx[0]), int(idx[-1]) + 1
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    masses = np.array([profile[r].sum() for r in runs])
    keep = ([r for r, m in zip(runs, masses, strict=True) if m >= SPECK_SHARE * masses.sum()]
            or [runs[int(masses.argmax())]])
    return int(keep[0][0]), int(keep[-1][-1]) + 1


def ink_box(ink: Image.Image, threshold: float) -> tuple[int, int, int, int] | None:
    """Bounding box of the object, ignoring small specks separated from it.

    A plain bounding box grows to include any speck of dust anywhere in a photo, which shrinks the
    digit to nothing. The row and column ink profiles of a ≤``STATS_SIDE``×2 px reduction locate the
    object's span; the exact box is then found at full resolution inside that span.
    """
    factor = -(-max(ink.size) // (2 * STATS_SIDE))
    small = ink.reduce(factor) if factor > 1 else ink
    # Box-averaging dims thin strokes by up to 1/factor: lower the cut to match.
    mask = _pixels(small) > threshold * 255 / factor
    if not mask.any():
        return None
    top, bottom = _main_span(mask.sum(axis=1))
    left, right = _main_span(mask[top:bottom].sum(axis=0))
    if factor == 1:  # the mask was full resolution: the spans are the box
        return left, top, right, bottom
    region = (left * factor, top * factor, min(ink.width, right * factor), min(ink.height, bottom * factor))
    box = _bbox(ink.crop(region), threshold)
    if box is None:
        return None
    return box[0] + region[0], box[1] + region[1], box[2] + region[0], box[3] + region[1]


@cache
def _threshold_lut(cut: int) -> Table:
    return Table([0] * (cut + 1) + [255] * (255 - cut))


@cache
def _stretch_lut(peak: int) -> Table:
    return Table([min(255, v * 255 // peak) for v in range(256)])


def _resize_long(img: Image.Image, side: int, resample: int = Image.LANCZOS) -> Image.Image:
    """Resize so the longer edge is ``side``, keeping the aspect ratio.

    PIL's resampling is antialiased when shrinking, like the anti-aliasing MNIST applied.
    """
    w, h = img.size
    scale = side / max(w, h)
    # reducing_gap: box-reduce big crops first, then resample the last 3× (same look, ~5× faster).
    return img.resize((max(1, min(side, round(w * scale))), max(1, min(side, round(h * scale)))), resample,
                      reducing_gap=3.0)


def _unit_peak(img: Image.Image) -> np.ndarray:
    """float32 array rescaled so the brightest pixel is 1: shrinking dims thin strokes, and almost
    every MNIST/Fashion-MNIST image peaks at 1."""
    a = _pixels(img, np.float32)
    peak = float(a.max())
    return a * (1.0 / peak) if peak > 0 else a


def stroke_width(a: np.ndarray) -> float:
    """Mean stroke width in pixels of a uint8 ink image: 2 × area / perimeter of the ink mask
    (exact for long strokes; perimeter = ink/background transitions along rows and columns)."""
    ink = np.zeros((a.shape[0] + 2, a.shape[1] + 2), bool)  # a > 127 with a 1-px margin (np.pad: ~20 µs)
    ink[1:-1, 1:-1] = a > 127
    area = np.count_nonzero(ink)
    perimeter = np.count_nonzero(ink[1:] != ink[:-1]) + np.count_nonzero(ink[:, 1:] != ink[:, :-1])
    return 2.0 * area / perimeter if perimeter else 0.0


def normalise_stroke(crop: Image.Image) -> Image.Image:
    """Thicken thin strokes (fine pens) or thin fat ones (broad brushes) into MNIST's width range.

    MNIST strokes are 1.6-2.6 px wide in the 20×20 box (25th-85th percentile, measured with
    ``stroke_width``); a ballpoint photo shrunk to 20 px is under 1 px and the network, which never
    saw such strokes, misreads it. Width is measured on a copy at ``STROKE_SCALE`` × the 20-px box,
    where dilating/eroding moves it in ¼-px steps. Strokes already in range return ``crop``
    itself, so a digit that is already MNIST-like is resized once, not twice.
    """
    glyph = _resize_long(crop, DIGIT_BOX * STROKE_SCALE, Image.BILINEAR)  # only measured/morphed
    peak = glyph.getextrema()[1]
    if 0 < peak < 255:  # shrinking dims hair-thin strokes below the mask threshold: restretch
        glyph = glyph.point(_stretch_lut(peak))
    width = stroke_width(_pixels(glyph)) / STROKE_SCALE
    if 0 < width < STROKE_MIN:
        r = min(4, round((STROKE_MIN - width) * STROKE_SCALE / 2))
        return glyph.filter(ImageFilter.MaxFilter(2 * r + 1)) if r else crop
    if width > STROKE_MAX:
        r = min(4, round((width - STROKE_MAX) * STROKE_SCALE / 2))
        return glyph.filter(ImageFilter.MinFilter(2 * r + 1)) if r else crop
    return crop


def _place(a: np.ndarray, top: int, left: int) -> np.ndarray:
    h, w = a.shape
    top = min(max(top, 0), SIZE - h)
    left = min(max(left, 0), SIZE - w)
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + h, left:left + w] = a
    return out


def fit_digit(ink: Image.Image) -> np.ndarray:
    """Crop to the ink, fit 20×20 keeping aspect, put the centre of mass at the centre of 28×28."""
    box = ink_box(ink, INK_THRESHOLD)
    if box is None:
        return _ZEROS.copy()
    a = _unit_peak(_resize_long(normalise_stroke(ink.crop(box)), DIGIT_BOX))
    mass = float(a.sum())
    if mass <= 0:
        return _ZEROS.copy()
    cy = float(a.sum(axis=1) @ np.arange(a.shape[0], dtype=np.float32)) / mass
    cx = float(a.sum(axis=0) @ np.arange(a.shape[1], dtype=np.float32)) / mass
    return _place(a, round(DIGIT_CENTRE - cy), round(DIGIT_CENTRE - cx))


def fit_frame(ink: Image.Image) -> np.ndarray:
    """Trim the background, fit the longer edge to 28 keeping aspect, centre the frame."""
    box = ink_box(ink, FRAME_THRESHOLD)
    if box is None:
        return _ZEROS.copy()
    a = _unit_peak(_resize_long(ink.crop(box), SIZE))
    h, w = a.shape
    # Odd margins go to the top/left: that is how Fashion-MNIST placed its items (measured).
    return _place(a, (SIZE - h + 1) // 2, (SIZE - w + 1) // 2)
