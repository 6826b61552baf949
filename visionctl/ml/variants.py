"""Test-set images re-rendered the ways real users send them: the real-world evaluation set.

MNIST/Fashion-MNIST test images are light-on-black 28×28 tensors; users send canvas drawings with
transparent backgrounds, phone photos of paper, product photos on white, tiny crops. Each variant
below turns one test image into such a picture, so accuracy on it measures the whole serving path
(decode → ``backend.model.preprocessing`` → model) and not just the network.

Rendering is deterministic: every image draws its randomness from a generator seeded with
``(seed, hash of the variant's name, image index)``, so a subset is the prefix of the full set and a result can be
reproduced from its seed alone. numpy + PIL only (no torch), so it runs where evaluation runs.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

Render = Callable[[np.ndarray, np.random.Generator], Image.Image]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    render: Render


# --- building blocks ------------------------------------------------------------------------


def _upscale(img: np.ndarray, width: int, height: int) -> Image.Image:
    """28×28 uint8 → smooth larger ``L`` image (bicubic, as if written at that resolution)."""
    return Image.fromarray(img).resize((width, height), Image.BICUBIC)


def _brush(img: np.ndarray, side: int, level: float, blur: float = 0.0) -> Image.Image:
    """A pen/brush drawing at ``side`` px: hard-edged strokes with ~2 px antialiasing.

    The smooth upscaled digit is cut at ``level`` (fraction of its peak): a low cut gives thick
    strokes, a high one thin strokes (0.9 → ~8 px, 0.5 → ~18 px MNIST-like, 0.1 → ~28 px at 280 px);
    ``blur`` widens the profile first for even thicker brushes. Cheaper than morphology filters.
    """
    big = _upscale(img, side, side)
    if blur:
        big = big.filter(ImageFilter.GaussianBlur(blur))
    peak = max(big.getextrema()[1], 1)
    ramp = np.clip((np.arange(256) / peak - level) / 0.15 + 0.5, 0, 1)
    return big.point((ramp * 255 + 0.5).astype(np.uint8).tolist())


def _on_canvas(obj: Image.Image, width: int, height: int, left: int, top: int, fill: int = 0) -> Image.Image:
    canvas = Image.new("L", (width, height), fill)
    canvas.paste(obj, (left, top))
    return canvas


def _ink_on_paper(ink: np.ndarray, paper: np.ndarray, ink_level: float) -> np.ndarray:
    """Blend: where ``ink`` (0..1) is 1 the paper shows ``ink_level``."""
    return paper * (1.0 - ink) + ink_level * ink


def _paper(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Off-white paper lit unevenly: a random linear brightness gradient, values ~190-245."""
    base = rng.uniform(205, 235)
    gy, gx = rng.uniform(-25, 25, size=2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return base + gy * (yy / height - 0.5) + gx * (xx / width - 0.5)


def _dust(page: np.ndarray, rng: np.random.Generator, most: int = 3) -> np.ndarray:
    """Up to ``most`` dark specks 2-5 px across (dust, paper fibres), anywhere on the page."""
    h, w = page.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(0, most + 1))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1.0, 2.5)
        page = np.where((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r, np.minimum(page, rng.uniform(30, 110)), page)
    return page


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Round-trip through an in-memory JPEG, as a phone or scanner would deliver it."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def _tint(gray: np.ndarray, rng: np.random.Generator, strength: float = 0.08) -> Image.Image:
    """Grey → RGB with a slight colour cast (white balance) but the same luminance on average."""
    gains = 1.0 + rng.uniform(-strength, strength, size=3)
    gains /= gains @ np.array([0.299, 0.587, 0.114])
    rgb = np.clip(gray[..., None] * gains, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)


# --- MNIST: how people send digits ----------------------------------------------------------

_STROKE_COLOURS = [(0, 0, 0), (20, 20, 120), (0, 70, 160), (170, 20, 20), (30, 110, 30), (255, 255, 255)]


def _mnist_clean(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(d)


def _mnist_inverted(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(255 - d)


def _mnist_canvas(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A drawing app export: 280×280 RGB, thick dark brush on white."""
    ink = np.asarray(_brush(d, 280, rng.uniform(0.1, 0.45), rng.uniform(0, 12)), np.float32) / 255
    colour = np.array(_STROKE_COLOURS[int(rng.integers(0, 5))], np.float32)
    rgb = 255.0 * (1 - ink[..., None]) + colour * ink[..., None]
    return Image.fromarray(_to_u8(rgb), "RGB")


def _mnist_transparent(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An HTML canvas PNG: RGBA, transparent (black) background, stroke colour only in alpha."""
    alpha = _brush(d, 280, rng.uniform(0.2, 0.6), rng.uniform(0, 4))
    colour = _STROKE_COLOURS[int(rng.integers(0, len(_STROKE_COLOURS)))]
    rgba = Image.new("RGBA", alpha.size, (0, 0, 0, 0))
    rgba.paste(Image.new("RGBA", alpha.size, colour + (255,)), mask=alpha)
    return rgba


def _mnist_small_offcentre(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A small digit somewhere in a big, non-square frame; either polarity."""
    w, h = int(rng.integers(200, 400)), int(rng.integers(200, 400))
    side = int(rng.integers(28, 64))
    left, top = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
    img = _on_canvas(_upscale(d, side, side), w, h, left, top)
    return Image.fromarray(255 - np.asarray(img)) if rng.random() < 0.5 else img


def _mnist_photo(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A phone photo/scan of pen on paper: off-white uneven paper, dust, noise, blur, RGB JPEG."""
    side = int(rng.integers(100, 200))
    w, h = side + int(rng.integers(20, 120)), side + int(rng.integers(20, 120))
    ink = _on_canvas(_brush(d, side, rng.uniform(0.3, 0.7)), w, h,
                     int(rng.integers(0, w - side)), int(rng.integers(0, h - side)))
    ink = np.asarray(ink.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))), np.float32) / 255
    page = _dust(_ink_on_paper(ink, _paper(h, w, rng), rng.uniform(20, 90)), rng)
    page += rng.normal(0, rng.uniform(3, 10), size=page.shape)
    return _jpeg(_tint(_to_u8(page), rng, 0.05), int(rng.integers(40, 85)))


def _mnist_rotated(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Written or photographed at a slant: ±15°, 112×112."""
    return _upscale(d, 112, 112).rotate(rng.uniform(-15, 15), Image.BICUBIC, expand=True)


def _mnist_aspect(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Narrow or wide handwriting (x stretched 0.75-1.33×) in a non-square frame, ink on white."""
    stretch = float(np.exp(rng.uniform(np.log(0.75), np.log(4 / 3))))
    gw, gh = max(8, round(84 * stretch)), 84
    w, h = gw + int(rng.integers(10, 200)), gh + int(rng.integers(10, 60))
    img = _on_canvas(_upscale(d, gw, gh), w, h, int(rng.integers(0, w - gw)), int(rng.integers(0, h - gh)))
    return Image.fromarray(255 - np.asarray(img))


def _mnist_thin_pen(d: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A fine pen at high resolution: 280×280, strokes ~8-12 px (half MNIST's width), dark on white."""
    ink = _brush(d, 280, rng.uniform(0.75, 0.9))
    return Image.fromarray(255 - np.asarray(ink))


# --- Fashion-MNIST: how people send product pictures ----------------------------------------


def _fashion_clean(f: np.ndarray, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(f)


def _fashion_product(f: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A catalogue photo: white background (Fashion-MNIST was made by negating these), 112×112 RGB."""
    return _tint(255.0 - np.asarray(_upscale(f, 112, 112), np.float32), rng, 0.15)


def _fashion_large(f: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Same polarity as the dataset but large: 280×280 RGB."""
    return _tint(np.asarray(_upscale(f, 280, 280), np.float32), rng, 0.15)


def _fashion_jpeg(f: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A phone photo of a product on an off-white backdrop: uneven light, dust, noise, JPEG."""
    side = int(rng.integers(84, 168))
    item = np.asarray(_upscale(f, side, side), np.float32) / 255
    paper = _paper(side, side, rng)
    page = _dust(paper * (1 - item) + rng.uniform(0, 30) * item, rng)
    page += rng.normal(0, rng.uniform(2, 6), size=item.shape)
    return _jpeg(_tint(_to_u8(page), rng), int(rng.integers(50, 90)))


def _fashion_padded(f: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Product on white in a non-square frame with random margins (a phone shot, not a crop)."""
    side = int(rng.integers(56, 112))
    w, h = side + int(rng.integers(0, 150)), side + int(rng.integers(0, 150))
    img = _on_canvas(_upscale(f, side, side), w, h, int(rng.integers(0, w - side + 1)),
                     int(rng.integers(0, h - side + 1)))
    return Image.fromarray(255 - np.asarray(img))


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "mnist": (
        Variant("clean", "the 28×28 test image as is", _mnist_clean),
        Variant("inverted", "dark ink on white", _mnist_inverted),
        Variant("canvas", "280×280 RGB drawing app export, thick coloured brush on white", _mnist_canvas),
        Variant("transparent", "280×280 RGBA canvas PNG, transparent background, any stroke colour",
                _mnist_transparent),
        Variant("small-offcentre", "28-64 px digit anywhere in a 200-400 px frame, either polarity",
                _mnist_small_offcentre),
        Variant("photo-jpeg", "pen on uneven off-white paper, dust specks, noise, blur, colour cast, JPEG q40-85",
                _mnist_photo),
        Variant("rotated", "rotated ±15°, 112 px", _mnist_rotated),
        Variant("aspect", "narrow/wide writing (0.75-1.33×) in a non-square white frame", _mnist_aspect),
        Variant("thin-pen", "280×280 fine pen strokes, dark on white", _mnist_thin_pen),
    ),
    "fashion-mnist": (
        Variant("clean", "the 28×28 test image as is", _fashion_clean),
        Variant("product-photo", "112×112 RGB on white (inverted polarity), colour cast", _fashion_product),
        Variant("large", "280×280 RGB, dataset polarity", _fashion_large),
        Variant("photo-jpeg", "off-white uneven backdrop, dust specks, noise, colour cast, JPEG q50-90", _fashion_jpeg),
        Variant("padded", "on white in a non-square frame with random margins", _fashion_padded),
    ),
}


def variants_for(dataset: str) -> tuple[Variant, ...]:
    try:
        return VARIANTS[dataset]
    except KeyError:
        raise ValueError(f"no variants for {dataset!r}; choose one of: {', '.join(VARIANTS)}") from None


def get_variant(dataset: str, name: str) -> Variant:
    for v in variants_for(dataset):
        if v.name == name:
            return v
    raise ValueError(f"unknown {dataset} variant {name!r}; choose from: "
                     f"{', '.join(v.name for v in variants_for(dataset))}")


def render(images: np.ndarray, dataset: str, variant: str, seed: int = 0) -> Iterator[Image.Image]:
    """Yield each uint8 (28, 28) image of ``images`` rendered as ``variant``; lazily, in order.

    The variant enters the seed as a stable hash of its name (not its position), so adding a
    variant never changes how the others render.
    """
    v = get_variant(dataset, variant)
    key = zlib.crc32(f"{dataset}/{variant}".encode())
    for i, img in enumerate(images):
        yield v.render(np.ascontiguousarray(img, dtype=np.uint8), np.random.default_rng([seed, key, i]))
