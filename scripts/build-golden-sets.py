#!/usr/bin/env python3
"""Write the golden set of each served model name: ``models/golden/<name>.npz``.

A golden set belongs to the *name* (the contract users rely on), not to a model version: every
candidate of ``mnist`` is measured on the same images, whatever its own card claims. It is every
``STRIDE``-th image of the dataset's official test split (held out from training), stored as the
raw 28×28 uint8 pixels the models take, with their labels and the test-file checksum they came from.

    python scripts/build-golden-sets.py --data-dir ../shared/datasets   # mnist/ and fashion-mnist/ below it
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.contract import MODEL_NAMES  # noqa: E402
from backend.model.card import write_atomic  # noqa: E402
from visionctl.ml.data import load_split  # noqa: E402

STRIDE = 10  # 1,000 of the 10,000 test images: 0.1 point of accuracy per image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding mnist/ and fashion-mnist/")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "golden")
    args = parser.parse_args()
    for name in MODEL_NAMES:
        test = load_split(name, "test", args.data_dir / name)
        index = np.arange(0, len(test.labels), STRIDE)
        buf = io.BytesIO()
        np.savez_compressed(buf, images=test.images[index].astype(np.uint8), labels=test.labels[index].astype(np.uint8),
                            test_index=index.astype(np.int32),
                            source=np.array(f"{name} t10k sha256 {test.sha256['t10k-images-idx3-ubyte']}"))
        write_atomic(args.out / f"{name}.npz", buf.getvalue())
        print(f"{args.out / f'{name}.npz'}: {len(index)} images")


if __name__ == "__main__":
    main()
