"""Synthetic pictures: digits as other writers and devices deliver them, and pictures that are no digit.

Everything here returns a PIL image *as a user would send it* (any size, either polarity, RGB or
grey, JPEG artefacts...). Training and evaluation both pass these through
``backend.model.preprocessing.preprocess`` — the request path — so the network learns (and is measured
on) exactly what the service feeds it, not on 28×28 arrays it never gets.

Sources stay apart: training renders MNIST *train* images and the *train* fonts; the other-writer
evaluation sets (:mod:`visionctl.ml.writers`) render MNIST *test* images and the held-out *eval*
fonts, with other seeds. Non-digit characters from fonts are never drawn here (they are reserved
for independent acceptance checks).
"""

from __future__ import annotations

import glob
import math
import os
import zlib
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from backend.model.preprocessing import preprocess
from visionctl.ml import variants as v
from visionctl.ml.data import DatasetError

Render = Callable[[np.random.Generator], Image.Image]

# Fonts are split by family so no eval font has a metric clone in training; all come from the Debian
# packages in FONT_PACKAGES.
FONT_DIRS = ("/usr/share/fonts",)
FONT_PACKAGES = ("fonts-dejavu fonts-liberation fonts-urw-base35 fonts-freefont-ttf fonts-crosextra-carlito "
                 "fonts-crosextra-caladea fonts-open-sans fonts-lato")  # scripts/test.sh installs these
TRAIN_FONTS = ("DejaVuSans", "DejaVuSerif", "DejaVuSansMono", "LiberationSans", "LiberationSerif",
               "LiberationMono", "NimbusSans", "NimbusRoman", "NimbusMonoPS")
EVAL_FONTS = ("Carlito", "Caladea", "URWBookman", "URWGothic", "C059", "P052", "FreeSans", "FreeSerif",
              "FreeMono", "OpenSans", "Lato")


def _stem(path: str) -> str:
    """A font file's name without extension or hyphens (``DejaVuSans-Bold.ttf`` → ``DejaVuSansBold``): what
    the family prefixes are matched against."""
    return os.path.basename(path).rsplit(".", 1)[0].replace("-", "")


@cache
def fonts(kind: str) -> tuple[str, ...]:
    """Font files of the ``"train"`` or ``"eval"`` families found on this machine, sorted."""
    prefixes = TRAIN_FONTS if kind == "train" else EVAL_FONTS
    found = set()
    for d in FONT_DIRS:
        for path in glob.glob(os.path.join(d, "**", "*.*"), recursive=True):
            base = os.path.basename(path)
            if base.rsplit(".", 1)[-1].lower() not in ("ttf", "otf"):
                continue
            stem = _stem(path)
            if any(stem.startswith(p) for p in prefixes) and "Math" not in stem:
                found.add(path)
    return tuple(sorted(found))


def missing_fonts(kind: str) -> tuple[str, ...]:
    """The font families of ``kind`` that this machine lacks."""
    stems = [_stem(f) for f in fonts(kind)]
    return tuple(p for p in (TRAIN_FONTS if kind == "train" else EVAL_FONTS) if not any(s.startswith(p) for s in stems))


def rng_for(seed: int, name: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), i])


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)


def _maybe_invert(img: Image.Image, rng: np.random.Generator, p: float = 0.5) -> Image.Image:
    if rng.random() < p:
        return Image.fromarray(255 - np.asarray(img.convert("L")))
    return img


# --- digits as other writers / devices deliver them ------------------------------------------


def _ink_crop(d: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(d > 30)
    if not len(ys):
        return d
    return d[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def optdigits(d: np.ndarray, rng: np.random.Generator, side: int = 8, levels: int = 17) -> Image.Image:
    """A low-resolution scan the way the UCI optdigits set was made: the digit is fitted into a
    32×32 binary bitmap, and each cell counts the ink pixels of its block (8×8 cells = 4×4 blocks,
    17 grey levels). ``side`` other than 8 area-averages the same bitmap; ``levels`` quantises."""
    grid = optdigits_grid(d, rng, side, levels)
    img = Image.fromarray(_u8(grid))
    if rng.random() < 0.3:  # some clients upscale before sending
        k = int(rng.integers(2, 9))
        img = img.resize((side * k, side * k), rng.choice([Image.NEAREST, Image.BILINEAR]))
    return _maybe_invert(img, rng, 0.3)


def optdigits_grid(d: np.ndarray, rng: np.random.Generator, side: int = 8, levels: int = 17) -> np.ndarray:
    """The ``side``×``side`` cells of :func:`optdigits` (0-255, ink bright) before any upscaling or
    inversion: every bit of the picture there is to read."""
    crop = _ink_crop(d)
    h, w = crop.shape
    box = int(rng.integers(28, 33))
    stretch = rng.uniform(1.0, 1.6)  # the NIST normaliser often widened narrow glyphs
    th = box
    tw = max(4, min(32, round(box * w / h * stretch)))
    big = Image.fromarray(crop).resize((tw, th), Image.BILINEAR)
    if rng.random() < 0.5:
        big = big.filter(ImageFilter.MaxFilter(3))  # thicker pens
    bitmap = np.zeros((32, 32), np.float32)
    top, left = (32 - th) // 2, (32 - tw) // 2
    bitmap[top:top + th, left:left + tw] = (np.asarray(big) > rng.uniform(60, 160)).astype(np.float32)
    small = np.asarray(Image.fromarray(_u8(bitmap * 255)).resize((side, side), Image.BOX), np.float32) / 255
    q = np.round(small * (levels - 1)) / (levels - 1)
    # Counts 0-16 reach a client as 0-255 grey, scaled by 255/16 or by 16 (clipped at 255).
    scale = 255.0 if rng.random() < 0.5 else 256.0
    return np.clip(q * scale, 0, 255)


LOWRES_SIDES = (6, 7, 8, 9, 10, 12, 14, 16, 20, 24)


def lowres(d: np.ndarray, rng: np.random.Generator, side: int | None = None) -> Image.Image:
    """Downsampled to ``side`` px (default: one of ``LOWRES_SIDES``) by area averaging, optionally
    quantised, either polarity; sent small or re-upscaled."""
    a = lowres_grid(d, rng, side)
    side = len(a)
    img = Image.fromarray(_u8(a))
    if rng.random() < 0.5:
        k = max(2, 112 // side)
        img = img.resize((side * k, side * k), rng.choice([Image.NEAREST, Image.BILINEAR, Image.BICUBIC]))
    return _maybe_invert(img, rng)


def lowres_grid(d: np.ndarray, rng: np.random.Generator, side: int | None = None) -> np.ndarray:
    """The ``side``×``side`` pixels of :func:`lowres` (0-255, ink bright) before any upscaling or
    inversion."""
    if side is None:
        side = int(rng.choice(LOWRES_SIDES))
    a = np.asarray(Image.fromarray(d).resize((side, side), Image.BOX), np.float32)
    if rng.random() < 0.5:
        lv = int(rng.choice([2, 4, 8, 17]))
        a = np.round(a / 255 * (lv - 1)) / (lv - 1) * 255
    return a


def blurred(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(56, 140))
    img = v._upscale(d, side, side).filter(ImageFilter.GaussianBlur(rng.uniform(0.08, 0.2) * side / 4))
    return _maybe_invert(img, rng)


def stroke(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Very thick or very thin pens."""
    if rng.random() < 0.5:
        img = v._brush(d, 140, rng.uniform(0.02, 0.3), rng.uniform(2, 8))
    else:
        img = v._brush(d, 280, rng.uniform(0.8, 0.93))
    return _maybe_invert(img, rng)


def slant(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = 112
    img = v._upscale(d, side, side)
    shear = rng.uniform(-0.45, 0.45)
    img = img.transform((side + 60, side), Image.AFFINE, (1, shear, -30 - shear * side / 2, 0, 1, 0), Image.BICUBIC)
    img = img.rotate(rng.uniform(-20, 20), Image.BICUBIC, expand=True)
    return _maybe_invert(img, rng)


def offcentre(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    w, h = int(rng.integers(60, 300)), int(rng.integers(60, 300))
    side = int(rng.integers(20, max(21, min(w, h) // 2)))
    img = v._on_canvas(v._upscale(d, side, side), w, h, int(rng.integers(0, w - side + 1)),
                       int(rng.integers(0, h - side + 1)))
    return _maybe_invert(img, rng)


def scan(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A flatbed scan: white paper, dark ink, mild noise, sometimes bilevel, sometimes JPEG."""
    side = int(rng.integers(40, 120))
    w, h = side + int(rng.integers(8, 60)), side + int(rng.integers(8, 60))
    ink = v._on_canvas(v._brush(d, side, rng.uniform(0.3, 0.65)), w, h, int(rng.integers(0, w - side)),
                       int(rng.integers(0, h - side)))
    ink = np.asarray(ink, np.float32) / 255
    page = v._ink_on_paper(ink, np.full(ink.shape, rng.uniform(225, 252), np.float32), rng.uniform(10, 80))
    page += rng.normal(0, rng.uniform(1, 5), page.shape)
    if rng.random() < 0.3:
        page = np.where(page < 140, 0.0, 255.0)
    img = Image.fromarray(_u8(page))
    return v._jpeg(img, int(rng.integers(50, 95))) if rng.random() < 0.5 else img


def photo(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A phone photo of paper, slightly rotated and out of focus (the variants' photo plus tilt)."""
    img = v._mnist_photo(d, rng)
    return img.rotate(rng.uniform(-8, 8), Image.BICUBIC, expand=False, fillcolor=tuple(int(c) for c in
                                                                                  img.getpixel((0, 0))))


def serif_one(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Adds a flag and (often) a foot to a 1, as printed and many European writers draw it."""
    return serif_one_footed(d, rng)[0]


def serif_one_footed(d: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """:func:`serif_one` and whether it drew a foot (the same draws: the same picture for the same rng)."""
    a = d.astype(np.float32)
    ys, xs = np.nonzero(d > 100)
    if not len(ys):
        return d, False
    top, bottom = ys.min(), ys.max()
    tx = int(np.round(xs[ys <= top + 2].mean()))
    bx = int(np.round(xs[ys >= bottom - 2].mean()))
    img = Image.fromarray(_u8(a))
    draw = ImageDraw.Draw(img)
    width = int(rng.integers(2, 4))
    flag = rng.uniform(4, 8)
    draw.line([(tx, top), (tx - flag, top + flag * rng.uniform(0.5, 1.0))], fill=255, width=width)
    footed = bool(rng.random() < 0.7)
    if footed:
        foot = rng.uniform(3, 6)
        draw.line([(bx - foot, bottom), (bx + foot, bottom)], fill=255, width=width)
    return np.asarray(img), footed


def crossed_seven(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bar across the stem of a 7 (the continental 7)."""
    ys, xs = np.nonzero(d > 100)
    if not len(ys):
        return d
    top, bottom = ys.min(), ys.max()
    y = int(top + (bottom - top) * rng.uniform(0.45, 0.6))
    row = np.nonzero(d[max(0, y - 1):y + 2].max(axis=0) > 100)[0]
    cx = float(row.mean()) if len(row) else float(xs.mean())
    half = rng.uniform(3, 5.5)
    img = Image.fromarray(d.copy())
    ImageDraw.Draw(img).line([(cx - half, y), (cx + half, y)], fill=255, width=int(rng.integers(2, 4)))
    return np.asarray(img)


def font_digit(digit: int, font_files: Sequence[str], rng: np.random.Generator) -> Image.Image:
    """A printed digit from one of ``font_files``: random size, weight, slant, margins, polarity."""
    path = font_files[int(rng.integers(0, len(font_files)))]
    size = int(rng.integers(28, 96))
    font = ImageFont.truetype(path, size)
    text = str(digit)
    stroke_w = int(rng.integers(0, max(1, size // 16) + 1)) if rng.random() < 0.4 else 0
    x0, y0, x1, y1 = font.getbbox(text, stroke_width=stroke_w)
    pad = int(rng.integers(2, size // 2 + 3))
    w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).text((pad - x0, pad - y0), text, font=font, fill=255, stroke_width=stroke_w, stroke_fill=255)
    if rng.random() < 0.5:
        img = img.rotate(rng.uniform(-10, 10), Image.BICUBIC, expand=True)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    if rng.random() < 0.3:  # printed and then photographed or scanned small
        small = int(rng.integers(8, 20))
        img = img.resize((max(4, round(small * w / h)), small), Image.BOX)
    return _maybe_invert(img, rng, 0.6)


# How the training pool renders train digits; eval sets use the same renderers on test digits
# with other seeds (plus the existing variants).
TRAIN_RENDERERS: dict[str, Callable[[np.ndarray, np.random.Generator], Image.Image]] = {
    "optdigits8": optdigits,
    "lowres": lowres,
    "blur": blurred,
    "stroke": stroke,
    "slant": slant,
    "offcentre": offcentre,
    "scan": scan,
    "photo": photo,
    "canvas": v._mnist_canvas,
    "transparent": v._mnist_transparent,
    "thin-pen": v._mnist_thin_pen,
}


FASHION_RENDERERS: dict[str, Callable[[np.ndarray, np.random.Generator], Image.Image]] = {
    "product": v._fashion_product,
    "large": v._fashion_large,
    "jpeg": v._fashion_jpeg,
    "padded": v._fashion_padded,
}


# Of the rendered 1s and 7s, the shares drawn as a serif 1 (a flag, often a foot) and a crossed 7.
SERIF_ONE_SHARE, CROSSED_SEVEN_SHARE = 0.4, 0.3


def render_digits(images: np.ndarray, labels: np.ndarray, seed: int, mode: str = "digit",
                  renderers: dict | None = None, weights: dict[str, float] | None = None) -> np.ndarray:
    """Each image rendered by one renderer (random per image, uniform or by ``weights``) and
    preprocessed: float32 (N, 28, 28). 1s and 7s get serif / bar variants with some probability first."""
    renderers = renderers or TRAIN_RENDERERS
    names = sorted(renderers)
    p = None
    if weights:
        p = np.array([weights.get(k, 1.0) for k in names], np.float64)
        p /= p.sum()
    out = np.empty((len(images), 28, 28), np.float32)
    for i, (d, y) in enumerate(zip(images, labels, strict=True)):
        rng = rng_for(seed, "render", i)
        if mode != "digit":
            pass
        elif y == 1 and rng.random() < SERIF_ONE_SHARE:
            d = serif_one(d, rng)
        elif y == 7 and rng.random() < CROSSED_SEVEN_SHARE:
            d = crossed_seven(d, rng)
        name = names[int(rng.integers(0, len(names)))] if p is None else names[int(rng.choice(len(names), p=p))]
        out[i] = preprocess(renderers[name](d, rng), mode)
    return out


def render_fonts(n: int, kind: str, seed: int, mode: str = "digit") -> tuple[np.ndarray, np.ndarray]:
    """``n`` printed digits from the ``"train"`` or ``"eval"`` fonts, preprocessed. Every family must be
    there: with one missing, training would silently learn another recipe and an evaluation would
    drop or change a set, so DatasetError names the packages instead."""
    missing = missing_fonts(kind)
    if missing:
        raise DatasetError(f"{kind} fonts missing ({', '.join(missing)}): apt-get install {FONT_PACKAGES}")
    files = fonts(kind)
    labels = np.arange(n, dtype=np.int64) % 10
    out = np.empty((n, 28, 28), np.float32)
    for i in range(n):
        out[i] = preprocess(font_digit(int(labels[i]), files, rng_for(seed, f"font-{kind}", i)), mode)
    return out, labels


# --- things that are not digits ---------------------------------------------------------------


def _size(rng: np.random.Generator, lo: int = 32, hi: int = 256) -> tuple[int, int]:
    return int(rng.integers(lo, hi)), int(rng.integers(lo, hi))


def _colourise(gray: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Grey field → RGB with independent random affine colour per channel (a photo-like palette)."""
    g = (gray - gray.min()) / max(float(np.ptp(gray)), 1e-6)
    if rng.random() < 0.4:
        return Image.fromarray(_u8(g * 255))
    chans = []
    for _ in range(3):
        lo, hi = sorted(rng.uniform(0, 255, 2))
        chans.append(lo + (hi - lo) * (g if rng.random() < 0.7 else g ** rng.uniform(0.5, 2)))
    return Image.fromarray(_u8(np.stack(chans, -1)), "RGB")


def pink_noise(h: int, w: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """1/f^beta random field: beta≈2 has the spectrum of natural photographs."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spec[0, 0] = 0
    return np.fft.irfft2(spec, s=(h, w)).astype(np.float32)


def o_uniform_noise(rng):
    w, h = _size(rng, 8, 200)
    if rng.random() < 0.5:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))


def o_gaussian_noise(rng):
    w, h = _size(rng, 16, 200)
    a = rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), (h, w))
    if rng.random() < 0.5:  # salt and pepper
        a = np.where(rng.random((h, w)) < rng.uniform(0.02, 0.3), rng.choice([0, 255], (h, w)), rng.uniform(0, 255))
    return Image.fromarray(_u8(a))


def o_photo_field(rng):
    """Photo-like: 1/f^β random field, coloured, sometimes thresholded into silhouettes, JPEG."""
    w, h = _size(rng, 48, 256)
    a = pink_noise(h, w, rng.uniform(1.2, 3.2), rng)
    if rng.random() < 0.25:
        a = (a > np.quantile(a, rng.uniform(0.3, 0.8))).astype(np.float32)
    img = _colourise(a, rng)
    return v._jpeg(img, int(rng.integers(40, 95))) if rng.random() < 0.5 else img


def o_gradient(rng):
    w, h = _size(rng, 16, 200)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        ang = rng.uniform(0, 2 * math.pi)
        a = xx * math.cos(ang) + yy * math.sin(ang)
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    a = a + rng.normal(0, rng.uniform(0, 0.05) * float(np.ptp(a) + 1), a.shape)
    return _colourise(a, rng)


def o_texture(rng):
    """Periodic and quasi-periodic textures: gratings, checks, plaids, dots, bricks, hatching, weave."""
    w, h = _size(rng, 32, 256)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(0, 6))
    period = rng.uniform(3, 24)
    ang = rng.uniform(0, math.pi)
    u = xx * math.cos(ang) + yy * math.sin(ang)
    t = -xx * math.sin(ang) + yy * math.cos(ang)
    if kind == 0:
        a = np.sin(2 * math.pi * u / period)
    elif kind == 1:
        a = np.sign(np.sin(2 * math.pi * u / period) * np.sin(2 * math.pi * t / period))
    elif kind == 2:
        a = np.sin(2 * math.pi * u / period) + np.sin(2 * math.pi * t / rng.uniform(3, 24))
    elif kind == 3:
        a = ((np.mod(u, period) - period / 2) ** 2 + (np.mod(t, period) - period / 2) ** 2 < (period / 3.5) ** 2)
        a = a.astype(np.float32)
    elif kind == 4:  # bricks
        row = np.floor(t / period)
        a = ((np.mod(t, period) < 1.5) | (np.mod(u + (row % 2) * period, 2 * period) < 1.5)).astype(np.float32)
    else:
        a = np.sin(2 * math.pi * u / period) * np.sin(2 * math.pi * t / period)
    a = a + rng.normal(0, rng.uniform(0, 0.6), a.shape) + 0.5 * pink_noise(h, w, 2.0, rng) / 20
    img = _colourise(a.astype(np.float32), rng)
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2)))
    return img


def o_shapes(rng):
    """Filled or outlined geometric shapes, one or many (blobs, cells, stars on black)."""
    w, h = _size(rng, 48, 256)
    bg = rng.uniform(0, 255)
    img = Image.new("L", (w, h), int(bg))
    draw = ImageDraw.Draw(img)
    kind = int(rng.integers(0, 4))
    n = 1 if kind == 0 else int(rng.integers(2, 40))
    for _ in range(n):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(2, min(w, h) / (2 if n == 1 else 5))
        fill = int(np.clip(bg + rng.choice([-1, 1]) * rng.uniform(80, 255), 0, 255))
        shape = int(rng.integers(0, 4))
        outline = rng.random() < 0.3
        box = [cx - r, cy - r * rng.uniform(0.4, 1), cx + r, cy + r * rng.uniform(0.4, 1)]
        if shape == 0:
            draw.ellipse(box, fill=None if outline else fill, outline=fill, width=max(1, int(r / 6)))
        elif shape == 1:
            draw.rectangle(box, fill=None if outline else fill, outline=fill, width=max(1, int(r / 6)))
        else:
            k = int(rng.integers(3, 11))
            angs = np.sort(rng.uniform(0, 2 * math.pi, k))
            radii = r * (rng.uniform(0.4, 1, k) if shape == 3 else np.ones(k))
            pts = [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a, rr in zip(angs, radii, strict=True)]
            draw.polygon(pts, fill=None if outline else fill, outline=fill)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 3)))
    return img


def o_scribble(rng):
    """A long tangle of pen strokes (5-12 random control points): handwriting-like, not a digit."""
    side = int(rng.integers(80, 240))
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    pts = rng.uniform(0.1 * side, 0.9 * side, (int(rng.integers(6, 13)), 2))
    # Chaikin smoothing makes the polyline a curve.
    for _ in range(3):
        q = 0.75 * pts[:-1] + 0.25 * pts[1:]
        r = 0.25 * pts[:-1] + 0.75 * pts[1:]
        pts = np.stack([q, r], 1).reshape(-1, 2)
    draw.line([tuple(p) for p in pts], fill=255, width=int(rng.integers(max(2, side // 40), side // 12 + 3)),
              joint="curve")
    return _maybe_invert(img, rng)


def o_glyph(rng):
    """A made-up character: 2-4 pen strokes (straight, bent or arcs) between points of a 3×3 grid in
    a glyph-shaped box — the structure of printed letters and symbols without any font."""
    side = int(rng.integers(80, 240))
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    w, h = side * rng.uniform(0.35, 0.8), side * rng.uniform(0.6, 0.85)
    x0, y0 = (side - w) / 2, (side - h) / 2
    grid = [(x0 + w * gx / 2, y0 + h * gy / 2) for gy in range(3) for gx in range(3)]
    width = int(rng.integers(max(2, side // 40), side // 10 + 3))
    for _ in range(int(rng.integers(2, 5))):
        kind = rng.random()
        if kind < 0.6:  # a straight or bent stroke through 2-3 grid points
            pts = [grid[int(k)] for k in rng.choice(9, int(rng.integers(2, 4)), replace=False)]
            draw.line(pts, fill=255, width=width, joint="curve")
        else:  # an arc of an ellipse spanning part of the box
            cx, cy = grid[int(rng.integers(0, 9))]
            rx, ry = w * rng.uniform(0.2, 0.5), h * rng.uniform(0.15, 0.5)
            start = rng.uniform(0, 360)
            draw.arc([cx - rx, cy - ry, cx + rx, cy + ry], start, start + rng.uniform(90, 300), fill=255, width=width)
    if rng.random() < 0.3:
        img = img.rotate(rng.uniform(-15, 15), Image.BICUBIC)
    return _maybe_invert(img, rng)


def digit_turned(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A digit lying on its side (90° either way) — no longer a digit, still made of digit strokes.
    0s and 1s are left out: a turned 0 is still a 0, a turned slanted 1 is still a stroke like a 1."""
    while True:
        i = int(rng.integers(0, len(images)))
        if labels[i] > 1:
            break
    img = Image.fromarray(images[i]).transpose(Image.ROTATE_90 if rng.random() < 0.5 else Image.ROTATE_270)
    if rng.random() < 0.5:
        img = img.resize((img.width * 4, img.height * 4), Image.BICUBIC)
    return _maybe_invert(img, rng, 0.4)


def o_blank(rng):
    """Nearly empty: flat colour, or a faint smudge, or one dot."""
    w, h = _size(rng, 8, 200)
    a = np.full((h, w), rng.uniform(0, 255), np.float32)
    if rng.random() < 0.7:
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, min(w, h) / 3)
        yy, xx = np.mgrid[0:h, 0:w]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        a = a + rng.choice([-1, 1]) * rng.uniform(20, 200) * blob
    return Image.fromarray(_u8(a))


NOISE_FAMILIES: dict[str, Render] = {
    "uniform-noise": o_uniform_noise,
    "gaussian-noise": o_gaussian_noise,
    "photo-like": o_photo_field,
    "gradient": o_gradient,
    "texture": o_texture,
    "shapes": o_shapes,
    "scribble": o_scribble,
    "glyph": o_glyph,
    "blank": o_blank,
}

ASYMMETRIC = (2, 3, 4, 5, 6, 7, 9)


def digit_mashup(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A training digit turned into a non-digit: two different digits' halves, two digits overlaid,
    a mirrored asymmetric digit, a heavy crop (a fragment), or two digits side by side."""
    def pick(exclude=-1):
        while True:
            j = int(rng.integers(0, len(images)))
            if labels[j] != exclude:
                return j
    kind = int(rng.integers(0, 5))
    i = pick()
    a = images[i].astype(np.float32)
    if kind == 0:
        b = images[pick(labels[i])].astype(np.float32)
        if rng.random() < 0.5:
            cut = int(rng.integers(11, 17))
            out = np.concatenate([a[:cut], b[cut:]], 0)
        else:
            cut = int(rng.integers(11, 17))
            out = np.concatenate([a[:, :cut], b[:, cut:]], 1)
    elif kind == 1:
        b = images[pick(labels[i])].astype(np.float32)
        b = np.roll(b, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), (0, 1))
        out = np.maximum(a, b)
    elif kind == 2:
        while labels[i] not in ASYMMETRIC:
            i = pick()
        out = images[i].astype(np.float32)[:, ::-1]
    elif kind == 3:
        ys, xs = np.nonzero(images[i] > 30)
        if labels[i] == 1 or not len(ys):
            out = np.maximum(a, a[:, ::-1])
        else:
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            hh, ww = max(3, int((y1 - y0) * rng.uniform(0.35, 0.55))), max(3, int((x1 - x0) * rng.uniform(0.35, 0.6)))
            top, left = int(rng.integers(y0, max(y0 + 1, y1 - hh))), int(rng.integers(x0, max(x0 + 1, x1 - ww)))
            out = np.zeros_like(a)
            out[top:top + hh, left:left + ww] = a[top:top + hh, left:left + ww]
    else:
        b = images[pick()].astype(np.float32)
        out = np.concatenate([a[:, 2:24], b[:, 4:26]], 1)
    img = Image.fromarray(_u8(out))
    if rng.random() < 0.5:
        img = img.resize((img.width * 4, img.height * 4), Image.BICUBIC)
    return _maybe_invert(img, rng, 0.4)


def outlier_renderers(digits: tuple[np.ndarray, np.ndarray] | None = None, other: np.ndarray | None = None,
                      weights: dict[str, float] | None = None) -> tuple[list[Render], np.ndarray]:
    """The outlier families as renderers, by name, and each one's probability per ``weights`` (the rest
    weigh 1). ``digits`` (images, labels) feeds the mash-up family; ``other`` (uint8 images of the other
    dataset) is rendered as-is or inverted."""
    families: dict[str, Render] = dict(NOISE_FAMILIES)
    if digits is not None:
        families["digit-mashup"] = lambda r: digit_mashup(digits[0], digits[1], r)
        families["digit-turned"] = lambda r: digit_turned(digits[0], digits[1], r)
    if other is not None:
        families["other-dataset"] = lambda r: _maybe_invert(
            Image.fromarray(other[int(r.integers(0, len(other)))]).resize((112, 112), Image.BICUBIC)
            if r.random() < 0.5 else Image.fromarray(other[int(r.integers(0, len(other)))]), r, 0.3)
    names = sorted(families)
    w = np.array([(weights or {}).get(k, 1.0) for k in names], np.float64)
    return [families[k] for k in names], w / w.sum()


def render_outliers(n: int, seed: int, mode: str, renderers: list[Render], p: np.ndarray) -> np.ndarray:
    """``n`` preprocessed outliers: float32 (N, 28, 28), each from a family drawn with probabilities ``p``
    (``outlier_renderers``)."""
    out = np.empty((n, 28, 28), np.float32)
    for i in range(n):
        rng = rng_for(seed, "outlier", i)
        out[i] = preprocess(renderers[int(rng.choice(len(renderers), p=p))](rng), mode)
    return out


SHRUNK_SIDES = (8, 16)  # small non-digits: area-averaged to a longer side in this range (inclusive)


def shrink(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``img`` area-averaged so its longer side is 8-16 px (``SHRUNK_SIDES``): a picture sent small."""
    gray = img.convert("L")
    side = int(rng.integers(SHRUNK_SIDES[0], SHRUNK_SIDES[1] + 1))
    w, h = gray.size
    k = side / max(w, h)
    return gray.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BOX)


def render_family(name: str, n: int, seed: int, mode: str) -> np.ndarray:
    out = np.empty((n, 28, 28), np.float32)
    for i in range(n):
        out[i] = preprocess(NOISE_FAMILIES[name](rng_for(seed, name, i)), mode)
    return out
