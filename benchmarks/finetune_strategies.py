"""Compare the Fashion-MNIST fine-tuning strategies (fc2 | fc1+fc2 | all) from the MNIST weights.

Why: the default strategy of `visionctl train fashion-mnist` must be the one with the best test
accuracy, and that is a measurement, not a guess. Writes benchmarks/results/finetune_strategies.json.
    python benchmarks/finetune_strategies.py --data-dir ../shared/datasets/fashion-mnist --epochs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from visionctl.ml import train_config, training
from visionctl.ml.train_config import STRATEGIES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.paths import DATASETS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATASETS / "fashion-mnist"))
    parser.add_argument("--init-weights", default=str(ROOT / "models" / "mnist.pt"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="first N training images only (0 = all; for quick checks)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune_strategies.json"))
    args = parser.parse_args()

    results = []
    for strategy in STRATEGIES:
        cfg = train_config.make_config("fashion-mnist", data_dir=args.data_dir, epochs=args.epochs,
                                       strategy=strategy, init_weights=args.init_weights, limit=args.limit or None)
        start = time.perf_counter()
        _, metrics, _ = training.train(cfg)
        row = {"strategy": strategy, "epochs": args.epochs,
               "test_accuracy": round(metrics["accuracy"], 4),
               "per_epoch": [round(h["test_accuracy"], 4) for h in metrics["history"]],
               "seconds": round(time.perf_counter() - start, 1)}
        results.append(row)
        print(f"{strategy:8s} test accuracy {row['test_accuracy']:.2%} per epoch {row['per_epoch']} "
              f"({row['seconds']} s)",
              flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"best: {max(results, key=lambda r: r['test_accuracy'])['strategy']} → {args.out}")


if __name__ == "__main__":
    main()
