"""A per-process memory budget for decoding: concurrent big images wait their turn instead of OOMing.

The pixel limit bounds one image, not eight at once: eight 16 MP 16-bit PNGs decode to >2 GB in
parallel. Every image therefore reserves its estimated working memory (decoded pixels plus the
float copies preprocessing makes) before its pixels are decompressed, and releases it once it is
reduced to 28×28. A reservation that cannot be had within ``wait`` seconds is a 503 with
``Retry-After``; one larger than the whole budget is a 413.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from backend.contract import OVERLOADED
from backend.errors import ApiError, ImageTooLarge

# Bytes per pixel of Pillow's modes once decoded; preprocessing then holds float32 working copies.
MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 2, "I;16B": 2, "I;16L": 2,
              "I;16N": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4,
              "CMYK": 4, "I": 4, "F": 4}
WORKING_BYTES = 8  # float32 grayscale + one float32 intermediate per pixel


def estimate(size: tuple[int, int], mode: str) -> int:
    width, height = size
    return width * height * (MODE_BYTES.get(mode, 4) + WORKING_BYTES)


class MemoryBudget:
    def __init__(self, total_bytes: int, wait: float):
        self.total = total_bytes
        self.wait = wait
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int):
        if nbytes > self.total:
            raise ImageTooLarge(f"decoding this image needs ~{nbytes // 2**20} MiB; the server's decode budget "
                                f"is {self.total // 2**20} MiB (VISION_DECODE_MEMORY_MB); send a smaller image")
        deadline = time.monotonic() + self.wait
        with self._cond:
            while self.used + nbytes > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ApiError("the server is busy decoding other large images; retry shortly",
                                   code=OVERLOADED, headers={"Retry-After": "1"}, shed="memory")
                self._cond.wait(left)
            self.used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()
