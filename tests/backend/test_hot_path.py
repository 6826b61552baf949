"""The per-request fast paths give exactly what the plain code they replace gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from repo import ROOT

from backend.metrics import Children, Metrics
from backend.model import preprocessing

SAMPLES = sorted((ROOT / "samples").glob("*/*.png"))


def _plain_point(self, im: Image.Image) -> Image.Image:
    """What ``Table`` replaces: Pillow's public list path (rounds every entry, then the C lookup)."""
    return im.point(list(self.values))


def _plain_stroke_width(a: np.ndarray) -> float:
    ink = np.pad(a > 127, 1)
    area = np.count_nonzero(ink)
    perimeter = np.count_nonzero(ink[1:] != ink[:-1]) + np.count_nonzero(ink[:, 1:] != ink[:, :-1])
    return 2.0 * area / perimeter if perimeter else 0.0


@pytest.mark.parametrize("table", [preprocessing._levels_lut(False, 4, 1024), preprocessing._levels_lut(True, 300, 900),
                                   preprocessing._threshold_lut(51), preprocessing._stretch_lut(37)])
def test_table_lookup_equals_image_point(table):
    rng = np.random.default_rng(0)
    for shape in [(28, 28), (1, 1), (97, 13), (300, 400)]:
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), "L")
        fast, plain = img.point(table), _plain_point(table, img)
        assert fast.mode == plain.mode == "L" and fast.size == plain.size
        assert fast.tobytes() == plain.tobytes()


def test_stroke_width_equals_padded_reference():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (5, 80), (80, 64), (33, 17)]:
        for density in (0.0, 0.1, 0.5, 1.0):
            a = np.where(rng.random(shape) < density, 255, 0).astype(np.uint8)
            assert preprocessing.stroke_width(a) == _plain_stroke_width(a)


def _variant_images():
    """A few renders of every real-world variant (canvas, photo, transparent, thin pen, ...)."""
    from visionctl import variants

    rng = np.random.default_rng(2)
    for name, mode in (("mnist", "digit"), ("fashion-mnist", "frame")):
        base = [np.asarray(Image.open(p).convert("L")) for p in SAMPLES if p.parent.name == name]
        base = np.stack(base + [rng.integers(0, 256, (28, 28), dtype=np.uint8)])
        for v in variants.variants_for(name):
            for img in variants.render(base, name, v.name, seed=0):
                yield f"{name}/{v.name}", img, mode


def test_preprocess_equals_plain_path_on_samples_and_variants(monkeypatch):
    """Model inputs bit for bit: the shipped samples and every variant of benchmarks/variants.py."""
    cases = [(p.name, Image.open(p), "digit" if p.parent.name == "mnist" else "frame") for p in SAMPLES]
    try:
        cases += list(_variant_images())
    except ImportError:  # visionctl not installed: the samples alone
        pass
    fast = [preprocessing.preprocess(img, mode) for _, img, mode in cases]
    monkeypatch.setattr(preprocessing.Table, "point", _plain_point)
    monkeypatch.setattr(preprocessing, "stroke_width", _plain_stroke_width)
    for (label, img, mode), got in zip(cases, fast, strict=True):
        want = preprocessing.preprocess(img, mode)
        assert got.dtype == want.dtype and np.array_equal(got, want), label


def test_cached_children_are_the_labelled_children():
    metrics = Metrics()
    cache = Children(metrics.requests)
    child = cache[("POST", "/predict", "mnist", "200")]
    assert child is metrics.requests.labels("POST", "/predict", "mnist", "200")
    assert cache[("POST", "/predict", "mnist", "200")] is child
    child.inc()
    assert metrics.registry.get_sample_value(
        "vision_http_requests_total", {"method": "POST", "route": "/predict", "model": "mnist", "status": "200"}) == 1.0


def test_hot_path_benchmark_short_mode(tmp_path):
    """benchmarks/hot_path.py --short runs end to end, writes what the README says and stays inside its
    CPU budget (a ratio to /healthz, so a slow machine does not trip it)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "hot_path.json"
    proc = subprocess.run([sys.executable, "benchmarks/hot_path.py", "--short", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [r["path"] for r in results["inproc"]] == ["/predict", "/healthz"]
    assert all(r["cpu_us_per_request"] > 0 for r in results["inproc"])
    assert [r["path"] for r in results["http"]] == ["/predict", "/healthz"]
    assert all(r["errors"] == 0 and r["server_cpu_us_per_request"] > 0 for r in results["http"])
