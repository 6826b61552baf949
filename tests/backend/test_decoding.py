"""backend.model.decoding: lenient base64, format support, size limits before decoding, and fuzzing.

All fixtures are generated in memory with Pillow (a few hundred bytes each) so the module runs in
seconds; the fuzz runs are bounded and seeded, so a failure reproduces.
"""

from __future__ import annotations

import base64
import io
import random
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.errors import ImageTooLarge, InputError, InvalidBase64, UnsupportedImage
from backend.model.decoding import JPEG_DRAFT_SIZE, decode_base64, open_image

LIMIT = 16_000_000

# Pillow warns about the malformed metadata the fuzzers feed it; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def digit_image(size=(28, 28), mode="L") -> Image.Image:
    """A bright bar on black with a distinctive corner pixel, so orientation and content can be checked."""
    a = np.zeros((size[1], size[0]), np.uint8)
    a[size[1] // 4: 3 * size[1] // 4, size[0] // 2 - 2: size[0] // 2 + 2] = 255
    a[0, 0] = 200
    return Image.fromarray(a, "L").convert(mode)


def png_with_declared_size(width: int, height: int) -> bytes:
    """A syntactically valid PNG header declaring ``width``×``height`` with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


# --- base64 -----------------------------------------------------------------------------------

PNG = encode(digit_image(), "PNG")
B64 = base64.b64encode(PNG).decode()


@pytest.mark.parametrize("text", [
    B64,
    f"data:image/png;base64,{B64}",
    f"DATA:image/png;charset=utf-8;BASE64,{B64}",
    "\n".join(B64[i:i + 76] for i in range(0, len(B64), 76)) + "\n",   # `base64` CLI output
    "\r\n".join(B64[i:i + 64] for i in range(0, len(B64), 64)),        # PEM-style CRLF
    f"  \t{B64}\n ",
    B64.rstrip("="),
    base64.urlsafe_b64encode(PNG).decode(),
    base64.urlsafe_b64encode(PNG).decode().rstrip("="),
])
def test_decode_base64_accepts_common_dialects(text):
    assert decode_base64(text) == PNG


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   \n", "empty"),
    ("====", "empty"),
    ("data:image/png;base64,", "empty"),
    ("abcde", "truncated"),
    ("ab$cdefg", "'$'"),
    ("iVBOR w0K GgoAAA*", "'*'"),
    ("aGVsbG8=ZZ", "not valid base64"),
    ("ÄÖÜabcd", "'Ä'"),
    ("data:image/png,%89PNG", "not base64-encoded"),
])
def test_decode_base64_rejects_with_reason(text, fragment):
    with pytest.raises(InvalidBase64) as info:
        decode_base64(text)
    assert info.value.status == 400 and info.value.code == "invalid_base64"
    assert fragment in info.value.message


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=1, max_size=300), wrap=st.integers(1, 100), urlsafe=st.booleans(),
       strip=st.booleans(), prefix=st.booleans(), newline=st.sampled_from(["\n", "\r\n", " "]))
def test_decode_base64_roundtrips_every_dialect(data, wrap, urlsafe, strip, prefix, newline):
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    if strip:
        text = text.rstrip("=")
    text = newline.join(text[i:i + wrap] for i in range(0, len(text), wrap))
    if prefix:
        text = "data:image/png;base64," + text
    assert decode_base64(text) == data


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_decode_base64_never_raises_anything_but_invalid_base64(text):
    try:
        out = decode_base64(text)
    except InvalidBase64:
        return
    assert isinstance(out, bytes) and out


# --- formats, frames, orientation --------------------------------------------------------------

@pytest.mark.parametrize("fmt, mode", [
    ("PNG", "L"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "1"), ("JPEG", "RGB"), ("JPEG", "L"),
    ("WEBP", "RGB"), ("WEBP", "RGBA"), ("BMP", "RGB"), ("GIF", "P"), ("TIFF", "RGB"), ("TIFF", "L"),
])
def test_supported_formats_decode(fmt, mode):
    img = open_image(encode(digit_image((40, 30), mode), fmt), LIMIT)
    assert img.size == (40, 30)
    assert img.format == fmt
    img.getpixel((0, 0))  # pixels are loaded


def test_16_bit_png_keeps_depth():
    a = (np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 80)
    img = open_image(encode(Image.fromarray(a), "PNG"), LIMIT)
    assert img.mode.startswith("I") and img.size == (28, 28)
    assert np.asarray(img).max() > 255  # 16-bit values survive for preprocessing to scale


def test_cmyk_jpeg_decodes():
    img = open_image(encode(digit_image((32, 32), "RGB").convert("CMYK"), "JPEG"), LIMIT)
    assert img.mode == "CMYK" and img.size == (32, 32)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_image_gives_first_frame(fmt):
    frames = [Image.new("L", (20, 20), v).convert("RGB") for v in (255, 0, 128)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    img = open_image(data, LIMIT)
    assert getattr(img, "n_frames", 1) == 3
    assert img.convert("L").getpixel((10, 10)) > 240  # frame 0 is white


@pytest.mark.parametrize("orientation, expected_size", [(1, (40, 20)), (6, (20, 40)), (8, (20, 40)), (3, (40, 20))])
def test_exif_orientation_is_applied(orientation, expected_size):
    img = digit_image((40, 20), "RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = open_image(encode(img, "JPEG", exif=exif, quality=95), LIMIT)
    assert out.size == expected_size
    # The marked corner pixel (0, 0) moves where the rotation puts it.
    corner = {1: (0, 0), 3: (39, 19), 6: (19, 0), 8: (0, 39)}[orientation]
    assert out.convert("L").getpixel(corner) > 120


def test_large_jpeg_is_decoded_at_reduced_scale_but_stays_large_enough():
    data = encode(digit_image((2400, 1800), "RGB"), "JPEG", quality=80)
    out = open_image(data, LIMIT)
    assert min(out.size) >= JPEG_DRAFT_SIZE
    assert out.size[0] < 2400 and out.size[0] / out.size[1] == pytest.approx(4 / 3, rel=0.02)


# --- size limits, checked before decoding ------------------------------------------------------

def test_pixel_limit_boundary():
    data = encode(digit_image((100, 50)), "PNG")
    assert open_image(data, 5000).size == (100, 50)
    with pytest.raises(ImageTooLarge) as info:
        open_image(data, 4999)
    assert info.value.status == 413 and "100×50" in info.value.message


@pytest.mark.parametrize("width, height", [(50_000, 50_000), (2**31 - 1, 1), (20_000, 20_000), (4001, 4000)])
def test_decompression_bomb_rejected_from_header_without_allocating(width, height):
    data = png_with_declared_size(width, height)
    assert len(data) < 200
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ImageTooLarge):
            open_image(data, LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 0.5
    assert peak < 2_000_000  # bytes: nothing near width×height was allocated


@pytest.mark.parametrize("width, height", [(65535, 65535), (5000, 4000)])
def test_huge_declared_gif_and_bmp_rejected(width, height):
    gif = bytearray(encode(Image.new("P", (10, 10)), "GIF"))
    gif[6:10] = struct.pack("<HH", width, height)  # logical screen size
    bmp = bytearray(encode(Image.new("RGB", (10, 10)), "BMP"))
    bmp[18:26] = struct.pack("<ii", width, height)
    for data in (bytes(gif), bytes(bmp)):
        with pytest.raises(ImageTooLarge):
            open_image(data, LIMIT)


def test_huge_declared_jpeg_rejected():
    data = bytearray(encode(Image.new("L", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width in SOF0
    with pytest.raises(ImageTooLarge):
        open_image(bytes(data), LIMIT)


# --- not images ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"", b"hello world", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"%PDF-1.4\n", b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    encode(Image.new("RGB", (16, 16)), "ICO"), encode(Image.new("RGB", (16, 16)), "PPM"),
    bytes(range(256)) * 4,
])
def test_non_images_are_422(data):
    with pytest.raises(UnsupportedImage) as info:
        open_image(data, LIMIT)
    assert info.value.status == 422 and info.value.code == "unsupported_image"


# --- bounded fuzzing: only a decoded image or a typed InputError may come out ------------------

def _outcome(data: bytes) -> str:
    try:
        img = open_image(data, LIMIT)
    except InputError as exc:
        assert exc.status in (413, 422)
        return "error"
    assert img.size[0] * img.size[1] <= LIMIT
    return "image"


FUZZ_SEEDS = {
    "png": encode(digit_image((28, 28)), "PNG"),
    "png16": encode(Image.fromarray(np.full((20, 20), 40000, np.uint16)), "PNG"),
    "jpeg": encode(digit_image((40, 40), "RGB"), "JPEG"),
    "cmyk": encode(digit_image((24, 24), "RGB").convert("CMYK"), "JPEG"),
    "gif": encode(Image.new("P", (12, 12)), "GIF", save_all=True, append_images=[Image.new("P", (12, 12), 3)]),
    "webp": encode(digit_image((24, 24), "RGB"), "WEBP"),
    "bmp": encode(digit_image((16, 16), "RGB"), "BMP"),
    "tiff": encode(digit_image((16, 16), "RGB"), "TIFF", compression="tiff_deflate"),
}


@pytest.mark.parametrize("name", sorted(FUZZ_SEEDS))
def test_fuzz_truncations(name):
    data = FUZZ_SEEDS[name]
    step = max(1, len(data) // 150)
    outcomes = {_outcome(data[:n]) for n in range(0, len(data), step)}
    assert "error" in outcomes  # truncation is detected somewhere, not silently accepted everywhere


@pytest.mark.parametrize("name", sorted(FUZZ_SEEDS))
def test_fuzz_byte_corruption(name):
    rng = random.Random(f"corrupt-{name}")
    data = FUZZ_SEEDS[name]
    for _ in range(150):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        _outcome(bytes(mutated))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data):
    _outcome(data)


@settings(max_examples=150, deadline=None)
@given(prefix=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF", b"II*\0"]),
       tail=st.binary(max_size=512))
def test_fuzz_format_magic_with_garbage(prefix, tail):
    _outcome(prefix + tail)
