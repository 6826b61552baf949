"""Datasets: the original IDX files, from an offline directory or downloaded by torchvision.

IDX parsing is done here with numpy rather than through torchvision's dataset classes: it reads
``.gz`` or raw files from any flat directory (such as ``../shared/datasets/mnist``), needs no
``<root>/<Class>/raw`` layout and keeps torch out of evaluation. Checksums are over the
*decompressed* bytes, so a re-gzipped copy of the same data still verifies.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.contract import DIGIT, FRAME

DATA_DIR_ENV = "VISION_DATA_DIR"


class DatasetError(RuntimeError):
    """A dataset is missing or corrupt; the message is one line that says how to fix it."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    torchvision_class: str
    labels: tuple[str, ...]
    # Preprocessing a real-world image needs: "digit" = crop to the ink and centre by mass like
    # MNIST was made; "frame" = keep the whole frame (Fashion-MNIST items fill the picture).
    preprocessing: str
    # sha256 of each decompressed IDX file.
    sha256: dict[str, str]


SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        torchvision_class="MNIST",
        labels=tuple(str(i) for i in range(10)),
        preprocessing=DIGIT,
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        torchvision_class="FashionMNIST",
        labels=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        preprocessing=FRAME,
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ),
}


# The last HOLDOUT images of each train file are never trained on: the OOD threshold and the
# temperature are fitted on them (MNIST/Fashion test stays an evaluation set only).
HOLDOUT = 5000


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


@dataclass
class Split:
    images: np.ndarray  # uint8, (N, 28, 28)
    labels: np.ndarray  # int64, (N,)
    sha256: dict[str, str]


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (unsigned-byte payload, the only type MNIST uses)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - header != expected:
        raise ValueError(f"IDX payload has {len(data) - header} bytes, header declares {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None) -> Path | None:
    """Where the IDX files of ``name`` are: the given dir, ``$VISION_DATA_DIR``, or None (download).

    Either the folder holding the four files or its parent (with a ``<name>/`` subfolder) works, so
    ``VISION_DATA_DIR=../shared/datasets`` serves both datasets.
    """
    base = data_dir or os.environ.get(DATA_DIR_ENV)
    if not base:
        return None
    base = Path(base)
    spec = get_spec(name)
    for candidate in (base, base / name, base / spec.torchvision_class / "raw"):
        if _find_file(candidate, SPLIT_FILES["test"][0]):
            return candidate
    return base


def load_split(name: str, split: str, data_dir: str | os.PathLike | None = None,
               download_root: str | os.PathLike = "data") -> Split:
    """Load ``split`` ("train"/"test") of dataset ``name``, verifying checksums."""
    spec = get_spec(name)
    directory = resolve_data_dir(name, data_dir)
    if directory is None:
        directory = _download(spec, Path(download_root))
    arrays = []
    digests = {}
    for stem in SPLIT_FILES[split]:
        path = _find_file(directory, stem)
        if path is None:
            raise DatasetError(
                f"{name}: {stem}[.gz] not found in {directory}; pass --data-dir (or set "
                f"{DATA_DIR_ENV}) to a folder holding the four IDX files, e.g. ../shared/datasets/{name}")
        try:
            data = _read_bytes(path)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DatasetError(f"{name}: cannot read {path} ({exc}); delete it and fetch the file again") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256[stem]:
            raise DatasetError(
                f"{name}: checksum mismatch for {path} (sha256 {digest[:12]}…, expected "
                f"{spec.sha256[stem][:12]}…); the file is corrupt or not {name} — replace it")
        digests[stem] = digest
        arrays.append(parse_idx(data))
    images, labels = arrays
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DatasetError(f"{name}: {split} images {images.shape} and labels {labels.shape} do not match")
    return Split(images=images, labels=labels.astype(np.int64), sha256=digests)


def split_holdout(split: Split) -> tuple[Split, Split]:
    """(train part, held-out part) of a train split; the held-out part is its last :data:`HOLDOUT` images."""
    cut = len(split.labels) - min(HOLDOUT, len(split.labels) // 5)
    return (Split(split.images[:cut], split.labels[:cut], split.sha256),
            Split(split.images[cut:], split.labels[cut:], split.sha256))


def _download(spec: DatasetSpec, root: Path) -> Path:
    """Fetch with torchvision (online users); returns the folder with the raw IDX files."""
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise DatasetError(
            f"{spec.name}: no --data-dir given and torchvision is not installed to download it; "
            f"pip install '.[train]' or pass --data-dir") from None
    cls = getattr(tvd, spec.torchvision_class)
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise DatasetError(
            f"{spec.name}: download failed ({type(exc).__name__}: {exc}); offline? pass --data-dir "
            f"to a folder with the IDX files (e.g. ../shared/datasets/{spec.name})") from None
    return root / spec.torchvision_class / "raw"
