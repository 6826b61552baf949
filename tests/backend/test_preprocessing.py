"""backend.model.preprocessing: any decodable image → the (28, 28) float32 array the models expect.

Synthetic images are drawn with PIL so each property (polarity, transparency, centring, aspect,
blank input, PIL modes) is tested in isolation; the MNIST round trip uses the real test set and
the real ONNX model.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from backend.contract import PREPROCESSING_MODES as MODES
from backend.model import preprocessing as pp
from backend.model.preprocessing import DIGIT_BOX, MIN_CONTRAST, _thumbnail, preprocess, stroke_width
from devkit.backend_server import test_model_dir
from visionctl.ml.data import load_split


def draw_digit(size=(200, 200), ink=255, bg=0, mode="L", box=(60, 30, 140, 170), width=14) -> Image.Image:
    """A '0'-like ring (hollow, so stroke-width normalisation leaves its shape alone)."""
    img = Image.new(mode, size, bg)
    ImageDraw.Draw(img).ellipse(box, outline=ink, width=width)
    return img


def bbox(a: np.ndarray, threshold: float = 0.3) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero((a > threshold).any(1)), np.flatnonzero((a > threshold).any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    m = a.sum()
    return float(a.sum(1) @ np.arange(28)) / m, float(a.sum(0) @ np.arange(28)) / m


def assert_valid(out: np.ndarray) -> None:
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


# --- contract: any size, mode and content ---------------------------------------------------

PIL_MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK", "YCbCr", "PA", "HSV", "LAB"]


@st.composite
def images(draw):
    """Random size, PIL mode and content: noise, a uniform colour, or rectangles on a background."""
    w, h = draw(st.integers(1, 400)), draw(st.integers(1, 400))
    mode = draw(st.sampled_from(PIL_MODES))
    kind = draw(st.sampled_from(["noise", "uniform", "shapes"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        rgba = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
    else:
        rgba = np.broadcast_to(rng.integers(0, 256, size=4, dtype=np.uint8), (h, w, 4)).copy()
        for _ in range(rng.integers(0 if kind == "uniform" else 1, 1 if kind == "uniform" else 5)):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            rgba[y0:y0 + rng.integers(1, 60), x0:x0 + rng.integers(1, 60)] = rng.integers(0, 256, size=4)
    img = Image.fromarray(rgba)
    if mode in ("I;16", "I", "F"):  # what 16-bit / 32-bit / float TIFFs and PNGs decode to
        lum = np.asarray(img.convert("L"), np.float64)
        arr = {"I;16": (lum * 257).astype(np.uint16), "I": (lum * 257).astype(np.int32),
               "F": (lum / 255).astype(np.float32)}[mode]
        return Image.fromarray(arr)
    if mode == "LAB":
        return Image.frombytes("LAB", (w, h), np.ascontiguousarray(rgba[..., :3]).tobytes())
    img = img.convert(mode) if mode in ("LA", "PA", "RGBA") else img.convert("RGB").convert(mode)
    if mode == "P" and draw(st.booleans()):
        img.info["transparency"] = int(rng.integers(0, 256))
    return img


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(img=images(), mode=st.sampled_from(MODES))
def test_any_image_gives_a_valid_array(img, mode):
    assert_valid(preprocess(img, mode))


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="digit"):
        preprocess(draw_digit(), "auto")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("img", [
    Image.new("L", (100, 80), 0), Image.new("L", (100, 80), 255), Image.new("RGB", (50, 50), (120, 30, 200)),
    Image.new("RGBA", (280, 280), (0, 0, 0, 0)), Image.new("LA", (1, 1), (255, 0)), Image.new("1", (9, 3), 1),
    Image.new("I;16", (64, 64), 40000), Image.new("F", (10, 10), 0.5),
], ids=["black", "white", "colour", "transparent", "1px", "bilevel", "16bit", "float"])
def test_blank_images_give_zeros(img, mode):
    out = preprocess(img, mode)
    assert_valid(out)
    assert not out.any()


@pytest.mark.parametrize("sigma", [0.5, 1, 2, 3, 5])
@pytest.mark.parametrize("size", [(300, 400), (60, 45), (25, 25)])
def test_faint_noise_alone_is_blank(sigma, size):
    """Sensor noise on an empty sheet of paper must not be blown up into a 'digit' — also where a
    faint drawing counts (it must stand well clear of the noise, which 8-bit rounding hides)."""
    rng = np.random.default_rng(0)
    for level in (30, 128, 225):
        paper = np.clip(np.round(rng.normal(level, sigma, size=size)), 0, 255).astype(np.uint8)
        assert not preprocess(Image.fromarray(paper), "digit").any(), level


# --- polarity and transparency --------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_dark_on_light_equals_light_on_dark(mode):
    light = preprocess(draw_digit(ink=255, bg=0), mode)
    dark = preprocess(draw_digit(ink=0, bg=255), mode)
    assert light.sum() > 20
    np.testing.assert_allclose(dark, light, atol=1 / 255)


@settings(max_examples=60, deadline=None)
@given(size=st.tuples(st.integers(30, 300), st.integers(30, 300)),
       points=st.lists(st.tuples(st.floats(0.1, 0.9), st.floats(0.1, 0.9)), min_size=2, max_size=6),
       width=st.integers(1, 12), ink=st.integers(0, 255), contrast=st.integers(80, 255),
       mode=st.sampled_from(MODES))
def test_polarity_never_matters(size, points, width, ink, contrast, mode):
    """Any scribble, ink darker or lighter than its background: inverting the image changes nothing."""
    bg = ink - contrast if ink >= contrast else ink + contrast
    bg = min(max(bg, 0), 255)
    img = Image.new("L", size, bg)
    ImageDraw.Draw(img).line([(x * size[0], y * size[1]) for x, y in points], fill=ink, width=width)
    inverted = Image.fromarray(255 - np.asarray(img))
    # A faint thin line is shrunk into the levels thumbnail; when what is left of it sits within
    # rounding of the blank-image threshold, one polarity can round to "blank" and the other not.
    thumb = np.asarray(_thumbnail(img), np.float32) / 255
    assume(abs(abs(thumb.max() - thumb.min()) - MIN_CONTRAST) > 2 / 255)
    np.testing.assert_allclose(preprocess(inverted, mode), preprocess(img, mode), atol=2 / 255)


def test_off_white_paper_and_grey_ink():
    """Grey pencil on off-white paper still ends as full-contrast ink on exact black."""
    out = preprocess(draw_digit(ink=110, bg=215), "digit")
    ref = preprocess(draw_digit(ink=255, bg=0), "digit")
    assert out.max() == 1.0
    np.testing.assert_allclose(out, ref, atol=0.02)


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (200, 30, 30), (20, 20, 160)])
def test_transparent_canvas_background(colour):
    """Canvas PNGs: strokes opaque, background transparent (stored as transparent black)."""
    alpha = draw_digit()
    rgba = Image.new("RGBA", alpha.size, (0, 0, 0, 0))
    rgba.paste(Image.new("RGBA", alpha.size, colour + (255,)), mask=alpha)
    out = preprocess(rgba, "digit")
    np.testing.assert_allclose(out, preprocess(alpha, "digit"), atol=0.02)


def test_palette_with_transparency():
    p = draw_digit(ink=1, bg=0, mode="P")
    p.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)  # both entries black: only transparency tells them apart
    p.info["transparency"] = 0
    buf = io.BytesIO()
    p.save(buf, "PNG")
    decoded = Image.open(io.BytesIO(buf.getvalue()))
    assert decoded.mode == "P" and "transparency" in decoded.info
    np.testing.assert_allclose(preprocess(decoded, "digit"), preprocess(draw_digit(), "digit"), atol=0.02)


@pytest.mark.parametrize("convert", [
    lambda im: im.convert("1"), lambda im: im.convert("RGB"), lambda im: im.convert("CMYK"),
    lambda im: im.convert("LA"), lambda im: im.convert("P"),
    lambda im: Image.fromarray(np.asarray(im).astype(np.uint16) * 257),             # 16-bit PNG
    lambda im: Image.fromarray(np.asarray(im).astype(np.int32) * 257, "I"),
    lambda im: Image.fromarray(np.asarray(im).astype(np.float32) / 255, "F"),
], ids=["1", "RGB", "CMYK", "LA", "P", "I;16", "I", "F"])
def test_pil_modes_agree_with_grayscale(convert):
    img = draw_digit()
    np.testing.assert_allclose(preprocess(convert(img), "digit"), preprocess(img, "digit"), atol=0.02)


# --- geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize("box", [(5, 5, 45, 75), (300, 200, 360, 310), (150, 20, 260, 370)])
def test_digit_is_fitted_to_20px_and_centred_by_mass(box):
    out = preprocess(draw_digit(size=(400, 400), box=box, width=8), "digit")
    top, bottom, left, right = bbox(out, 0.05)
    assert max(bottom - top, right - left) in (DIGIT_BOX, DIGIT_BOX + 1)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.501 and abs(cx - 14) <= 0.501  # whole-pixel shift, like MNIST


def test_digit_keeps_aspect_ratio():
    out = preprocess(draw_digit(box=(80, 20, 120, 180), width=6), "digit")  # 40 × 160: 1:4
    top, bottom, left, right = bbox(out)
    assert bottom - top >= 19
    assert 3 <= right - left <= 7


def test_frame_keeps_whole_item_and_aspect():
    """Frame mode trims the background only: a 2:1 item fills 28 px one way, 14 the other, centred."""
    img = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(img).rectangle((100, 20, 159, 139), fill=40)   # 60 × 120, dark on white
    out = preprocess(img, "frame")
    top, bottom, left, right = bbox(out)
    assert (top, bottom) == (0, 28)
    assert right - left == 14 and left == 7


def test_stroke_width_is_brought_into_mnist_range():
    thin = preprocess(draw_digit(size=(1000, 1000), box=(300, 150, 700, 850), width=4), "digit")
    fat = preprocess(draw_digit(size=(1000, 1000), box=(300, 150, 700, 850), width=140), "digit")
    for out in (thin, fat):
        width = stroke_width((out * 255).astype(np.uint8))
        assert 1.2 <= width <= 3.2, width


@pytest.mark.parametrize("size, enlarged", [((8, 8), (56, 56)), ((7, 3), (56, 24)), ((19, 12), (57, 36)),
                                             ((1, 1), (56, 56))])
def test_small_pictures_are_enlarged_by_a_whole_factor(size, enlarged):
    assert pp.upsample_small(Image.new("L", size)).size == enlarged


@pytest.mark.parametrize("size", [(20, 5), (28, 28), (300, 40)])
def test_pictures_of_digit_box_size_and_up_are_left_alone(size):
    img = Image.new("L", size)
    assert pp.upsample_small(img) is img


def _cells(rng, size) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8), "L")


@pytest.mark.parametrize("cells, enlarged", [((8, 8), (64, 64)), ((8, 8), (28, 28)), ((6, 16), (21, 56)),
                                              ((19, 4), (219, 46)), ((3, 3), (24, 24)), ((16, 12), (1000, 750))])
def test_nearest_neighbour_blocks_go_back_to_their_cells(cells, enlarged):
    """PIL's enlargement (centre sampling, with its float ties) and index scaling (corner sampling,
    OpenCV's and numpy's) at whole and fractional factors: the exact cells come back."""
    small = _cells(np.random.default_rng(sum(enlarged)), cells)
    a = np.asarray(small)
    (w, h), (nx, ny) = enlarged, cells
    for blocks in (small.resize(enlarged, Image.NEAREST),
                   Image.fromarray(a[np.ix_(np.arange(h) * ny // h, np.arange(w) * nx // w)])):
        out = pp.undo_block_upscale(blocks)
        assert out.size == small.size and np.array_equal(np.asarray(out), a)


def test_blocky_digit_is_preprocessed_as_the_small_picture_it_is(mnist_test):
    for d in mnist_test.images[:20]:
        small = Image.fromarray(d).resize((8, 8), Image.BOX)
        for k in (3, 7):
            blocks = small.resize((8 * k, 8 * k), Image.NEAREST)
            np.testing.assert_array_equal(preprocess(blocks, "digit"), preprocess(small, "digit"))


def test_pictures_that_are_not_blocks_are_left_alone(mnist_test, shared_datasets):
    """Smooth enlargements, a JPEG copy of blocks, cells of 1 px, pictures under 20 px or over the
    checked size, noise, and every MNIST and Fashion-MNIST test image."""
    rng = np.random.default_rng(5)
    small = _cells(rng, (8, 8))
    jpeg = io.BytesIO()
    small.resize((56, 56), Image.NEAREST).save(jpeg, "JPEG", quality=90)  # 8-px DCT blocks across 7-px cells
    pictures = [small.resize((64, 64), Image.BILINEAR), small.resize((64, 64), Image.BICUBIC),
                Image.open(jpeg).convert("L"), _cells(rng, (19, 19)).resize((30, 30), Image.NEAREST),
                small.resize((16, 16), Image.NEAREST), _cells(rng, (200, 200)), Image.new("L", (64, 64), 9),
                small.resize((pp.BLOCKS_MAX_SIDE + 8, pp.BLOCKS_MAX_SIDE + 8), Image.NEAREST)]
    for img in pictures:
        assert pp.undo_block_upscale(img) is img, img.size
    for split in (mnist_test, load_split("fashion-mnist", "test", shared_datasets / "fashion-mnist")):
        for d in split.images:
            img = Image.fromarray(d)
            assert pp.undo_block_upscale(img) is img


def test_an_8px_digit_is_read_as_strokes_not_cells(mnist_test):
    """The same digit area-averaged to 8 px must come out closer to its full-resolution self than it
    does when the levels and the ink box work on the 8 px cells directly (the step's reason to be)."""
    def corr(a, b):
        a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
        return float(a @ b / np.sqrt((a @ a) * (b @ b)))

    gains = []
    for d in mnist_test.images[:100]:
        small = Image.fromarray(d).resize((8, 8), Image.BOX)
        ref = preprocess(Image.fromarray(d), "digit")
        cells = pp.fit_digit(pp.apply_levels(small, pp.estimate_levels(small)))
        gains.append(corr(preprocess(small, "digit"), ref) - corr(cells, ref))
    assert np.mean(gains) > 0.01 and np.mean(np.array(gains) > 0) > 0.55, np.mean(gains)


def _counts(d: np.ndarray, side: int = 8) -> np.ndarray:
    """An MNIST digit area-averaged to ``side`` px as ink counts 0-16 (optdigits' values, unscaled)."""
    small = np.asarray(Image.fromarray(d).resize((side, side), Image.BOX), np.float32)
    return np.round(small / 255 * 16).astype(np.uint8)


@pytest.mark.parametrize("deliver", ["as is", "as blocks"])
def test_a_faint_small_picture_is_read_as_its_full_range_self(mnist_test, deliver):
    """An 8×8 scan saved as its counts 0-16 (grey levels no eye sees) was blank: 8 % of such scans
    read right. It must come out as the same scan in 0-255 does, sent small or as nearest blocks."""
    from visionctl.ml.evaluation import classify, load_model

    def sent(a: np.ndarray) -> Image.Image:
        img = Image.fromarray(a)
        return img.resize((64, 64), Image.NEAREST) if deliver == "as blocks" else img

    faint, full = [], []
    for d in mnist_test.images[:200]:
        counts = _counts(d)
        faint.append(preprocess(sent(counts), "digit"))
        full.append(preprocess(sent(np.uint8(np.minimum(255, counts.astype(np.int32) * 16))), "digit"))
    faint, full = np.stack(faint), np.stack(full)
    assert faint.reshape(len(faint), -1).max(1).min() > 0.5  # none blank
    assert np.abs(faint - full).mean() < 0.01
    model = load_model("mnist", test_model_dir())
    assert (classify(model, faint).argmax(1) == classify(model, full).argmax(1)).mean() >= 0.97


@pytest.mark.parametrize("picture", ["digit", "scan enlarged"])
def test_a_faint_drawing_is_read(mnist_test, picture):
    """A whole digit at a sixteenth of its brightness (a picture saved with unscaled values), or an
    8×8 scan's counts 0-16 enlarged smoothly to 28 px (its border ring mostly ink), is a drawing: it
    comes out as its full-range self does, give or take a pixel's centring, and is read the same."""
    from visionctl.ml.evaluation import classify, load_model

    def drawn(d: np.ndarray, faint: bool) -> Image.Image:
        if picture == "digit":
            return Image.fromarray(d // 16 if faint else d)
        counts = _counts(d)
        a = counts if faint else np.uint8(np.minimum(255, counts.astype(np.int32) * 16))
        return Image.fromarray(a).resize((28, 28), Image.BICUBIC)

    digits = mnist_test.images[:200]
    faint = np.stack([preprocess(drawn(d, True), "digit") for d in digits])
    full = np.stack([preprocess(drawn(d, False), "digit") for d in digits])
    ink = faint.sum(axis=(1, 2)) / full.sum(axis=(1, 2))  # 17 grey levels re-stroke a pen a little
    assert ink.min() > 0.5 and np.median(np.abs(ink - 1)) < 0.15
    model = load_model("mnist", test_model_dir())
    same = (classify(model, faint).argmax(1) == classify(model, full).argmax(1)).mean()
    assert same >= 0.95, same


def test_faint_noise_on_a_small_picture_is_not_made_a_digit():
    """A small faint picture is taken at its own range, so faint noise becomes plain noise — which the
    verdict flags — not a digit."""
    from visionctl.ml.evaluation import load_model

    model = load_model("mnist", test_model_dir())
    rng = np.random.default_rng(0)
    pictures = np.stack([preprocess(Image.fromarray(np.clip(rng.normal(128, 3, (12, 12)), 0, 255).astype(np.uint8)),
                                    "digit") for _ in range(50)])
    from backend.model.inference import in_distribution

    assert not in_distribution(model.predict(pictures).ood_score, model.card.ood_threshold).any()


# --- the real data --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_test(shared_datasets):
    return load_split("mnist", "test", shared_datasets / "mnist")


def test_mnist_digits_round_trip(mnist_test):
    """An MNIST test digit is already normalised: preprocessing must leave it (almost) alone.

    Digits with unusually thin or fat strokes (~15 %) are deliberately re-stroked; the rest must
    come back pixel-identical up to rounding.
    """
    imgs = mnist_test.images[:500]
    out = np.stack([preprocess(Image.fromarray(d), "digit") for d in imgs])
    per_image = np.abs(out - imgs.astype(np.float32) / 255).mean(axis=(1, 2))
    assert (per_image < 0.005).mean() >= 0.75
    assert per_image.mean() < 0.015


def test_mnist_predictions_survive_preprocessing(mnist_test):
    from visionctl.ml.evaluation import classify, load_model

    model = load_model("mnist", test_model_dir())
    imgs, labels = mnist_test.images[:1000], mnist_test.labels[:1000]
    raw = classify(model, imgs).argmax(1)
    pre = classify(model, np.stack([preprocess(Image.fromarray(d), "digit") for d in imgs])).argmax(1)
    assert (pre == labels).mean() >= (raw == labels).mean() - 0.003
    assert (pre == raw).mean() >= 0.99


def test_fashion_items_round_trip(shared_datasets):
    split = load_split("fashion-mnist", "test", shared_datasets / "fashion-mnist")
    imgs = split.images[:300]
    out = np.stack([preprocess(Image.fromarray(f), "frame") for f in imgs])
    per_image = np.abs(out - imgs.astype(np.float32) / 255).mean(axis=(1, 2))
    # The rest are items Fashion-MNIST centred a pixel off, or that did not fill 28 px exactly.
    assert (per_image < 0.005).mean() >= 0.8


def test_dust_specks_do_not_shrink_the_digit():
    """A photo's specks far from the digit must not join its bounding box (it would shrink the digit)."""
    img = draw_digit(size=(400, 400), ink=0, bg=230, box=(150, 100, 230, 260), width=10)
    dusty = img.copy()
    draw = ImageDraw.Draw(dusty)
    for x, y in [(20, 20), (380, 370), (30, 350)]:
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=60)
    np.testing.assert_allclose(preprocess(dusty, "digit"), preprocess(img, "digit"), atol=0.02)
    np.testing.assert_allclose(preprocess(dusty, "frame"), preprocess(img, "frame"), atol=0.02)


def _encodings(img: Image.Image) -> dict[str, bytes]:
    """The shipped sample as users would send it: as is, a JPEG photo of it on paper, a canvas PNG, WebP."""
    big = img.resize((224, 224), Image.BICUBIC)
    out = {"png": img}
    out["jpeg-inverted"] = Image.fromarray(255 - np.asarray(big)).convert("RGB")
    canvas = Image.new("RGBA", big.size, (0, 0, 0, 0))
    canvas.paste(Image.new("RGBA", big.size, (20, 20, 160, 255)), mask=big)
    out["png-rgba-canvas"] = canvas
    out["webp"] = big.convert("RGB")
    encoded = {}
    for name, im in out.items():
        buf = io.BytesIO()
        im.save(buf, {"png": "PNG", "jpeg-inverted": "JPEG", "png-rgba-canvas": "PNG", "webp": "WEBP"}[name],
                **({"quality": 70} if name in ("jpeg-inverted", "webp") else {}))
        encoded[name] = buf.getvalue()
    return encoded


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_shipped_samples_survive_real_encodings(samples_dir, dataset):
    """bytes → backend.model.decoding.open_image → preprocess → ONNX gives the sample's label (its file name
    starts with the class index) for every encoding — the path a request takes."""
    from backend.model.decoding import open_image
    from visionctl.ml.evaluation import classify, load_model

    model = load_model(dataset, test_model_dir())
    for path in sorted((samples_dir / dataset).glob("*.png")):
        label = int(path.name.split("-")[0])
        for encoding, data in _encodings(Image.open(path).convert("L")).items():
            x = preprocess(open_image(data, 16_000_000), model.card.preprocessing)
            assert classify(model, x[None]).argmax() == label, (path.name, encoding)
