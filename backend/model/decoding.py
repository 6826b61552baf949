"""Untrusted request text → image bytes → a decoded PIL image, with size limits enforced early.

Two steps, both liberal in what they accept and strict about cost:

* :func:`decode_base64` takes what people actually paste: ``data:image/png;base64,`` URLs, output of
  ``base64`` wrapped at 76 columns, the URL-safe alphabet, dropped ``=`` padding.
* :func:`open_image` reads only the header first and rejects images whose *declared* width × height
  exceeds the pixel limit before any pixel is decompressed — a 40 kB PNG can declare 50 000² pixels
  (a decompression bomb), so the request-body limit alone does not bound memory.

Errors are :class:`backend.errors.InputError` subclasses carrying the HTTP status and error code.
Mode conversion, transparency and polarity are ``backend.model.preprocessing``'s job, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

from PIL import Image, ImageOps, UnidentifiedImageError

from backend.errors import ImageTooLarge, InvalidBase64, UnsupportedImage

# Formats users send. Pillow would also open e.g. EPS/PSD/ICO; each extra decoder is attack surface.
# (Phone JPEGs with an MPO extension are opened by the JPEG plugin and report format "MPO".)
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

# JPEGs larger than this are decoded at 1/2..1/8 scale by libjpeg (draft mode): a 12 MP photo then
# decodes ~10× faster, and 256 px is far more than the 28×28 the model sees.
JPEG_DRAFT_SIZE = 256

# Progressive JPEGs are decoded scan by scan, each pass over the whole image: a small file that
# repeats its last scan thousands of times costs minutes of CPU. Real encoders write ≤ ~20 scans.
MAX_JPEG_SCANS = 64
_JPEG_SOS = b"\xff\xda"  # start-of-scan marker; 0xFF inside entropy-coded data is always stuffed

_DATA_URL = re.compile(r"^data:[^,]{0,200},", re.IGNORECASE)
# Delete whitespace; map the URL-safe alphabet onto the standard one.
_NORMALISE = str.maketrans({" ": None, "\t": None, "\n": None, "\r": None, "\f": None, "\v": None,
                            "-": "+", "_": "/"})
_EXIF_ORIENTATION = 0x0112


def decode_base64(text: str) -> bytes:
    """Decode an image string leniently; raises :class:`InvalidBase64` (HTTP 400) with a reason."""
    s = text.strip()
    match = _DATA_URL.match(s)
    if match:
        if ";base64" not in match.group(0).lower():
            raise InvalidBase64("data: URL is not base64-encoded (expected 'data:image/...;base64,...')")
        s = s[match.end():]
    s = s.translate(_NORMALISE).rstrip("=")
    if not s:
        raise InvalidBase64("the base64 string is empty")
    if len(s) % 4 == 1:  # no padding can make this length valid: the string was cut off
        raise InvalidBase64(f"the base64 string has an impossible length ({len(s)} characters); "
                            "it looks truncated")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        bad = next((c for c in s if not (c.isascii() and (c.isalnum() or c in "+/="))), None)
        hint = f" (unexpected character {bad!r})" if bad else ""
        raise InvalidBase64(f"the string is not valid base64{hint}") from None


def open_image(data: bytes, max_pixels: int, reserve=None) -> Image.Image:
    """Decode ``data`` into a loaded PIL image: first frame, EXIF orientation applied.

    ``reserve(size, mode)``, if given, is called with the size to be decoded before decoding (see
    ``backend.protection.budget``). Raises :class:`ImageTooLarge` (413) when width × height exceeds
    ``max_pixels`` — checked from the header before decoding — and :class:`UnsupportedImage` (422)
    for anything that is not a complete PNG/JPEG/WebP/BMP/GIF/TIFF image.
    """
    if not data:
        raise UnsupportedImage("the image is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)  # parses the header only
    except Image.DecompressionBombError as exc:  # Pillow's own, looser, limit tripped first
        raise ImageTooLarge(f"image dimensions exceed the limit of {max_pixels} pixels ({exc})") from None
    except UnidentifiedImageError:
        raise UnsupportedImage(f"not an image, or not a supported format ({', '.join(FORMATS)}); "
                               f"first bytes: {data[:8].hex()}") from None
    except Exception as exc:  # Pillow raises many types (SyntaxError, struct.error...) on bad headers
        raise UnsupportedImage(f"corrupt image header: {_reason(exc)}") from None

    _check_size(img.size, max_pixels)
    if img.format in ("JPEG", "MPO"):
        scans = data.count(_JPEG_SOS)
        if scans > MAX_JPEG_SCANS:
            raise UnsupportedImage(f"the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are accepted "
                                   "(re-save it as a baseline JPEG or a PNG)")
    if img.format in ("JPEG", "MPO") and min(img.size) > 2 * JPEG_DRAFT_SIZE:
        img.draft(None, (JPEG_DRAFT_SIZE, JPEG_DRAFT_SIZE))  # sets the reduced size before decoding
    if reserve is not None:  # the caller's memory budget, charged before any pixel is decompressed
        reserve(img.size, img.mode)
    try:
        img.load()  # first frame of animations: a freshly opened image is positioned at frame 0
        _check_size(img.size, max_pixels)  # GIF frames may grow the canvas once decoded
        if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
    except (ImageTooLarge, MemoryError):
        raise
    except Exception as exc:  # truncated data, bad checksums, broken EXIF...
        raise UnsupportedImage(f"the {img.format} image could not be decoded: {_reason(exc)}") from None
    return img


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise UnsupportedImage(f"the image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}×{height} = {width * height} pixels; "
                            f"the limit is {max_pixels} pixels")


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]
