"""How much of a small digit there is to read: the shipped MNIST model against specialists trained on
one resolution only, on the same pictures. docs/model.md ("Not reached") quotes it.

    .venv/bin/python benchmarks/resolution_ceiling.py           # saves results/resolution_ceiling.json (~20 min)
    .venv/bin/python benchmarks/resolution_ceiling.py --short   # CI: 8 px only, small training, exits 1 below the bars
    .venv/bin/python benchmarks/resolution_ceiling.py --rescore # a new release: its columns only (~1 min)
    .venv/bin/python benchmarks/resolution_ceiling.py --doc     # docs/model.md's table from the saved JSON

For each kind of small picture (``oodeval``'s resolution-curve renderings at 6, 8 and 10 px, and the
8×8 optdigits-style scans), on the same MNIST *test* pictures ``benchmarks/ood.py`` scores:

* **shipped**: the MNIST model through the serving path (the picture decoded and preprocessed as sent);
* **native specialist**: a small CNN trained only on that kind of picture, reading its raw cells (the
  pixels before any upscaling or inversion, which lose nothing a reader could use). A lower bound on
  what the pictures hold;
* **served-view specialist**: the same kind of CNN trained only on the 28×28 arrays preprocessing
  makes of those pictures. What a network could read from the input the service gives it.

The specialists train on the train file's training part (never its held-out tail, never test), each
epoch freshly rendered with seeds apart from evaluation's and the held-out mix's. The shipped model is
also scored on the held-out tail (train-file writers it never trained on), rendered the same way: the
gap between the two files' writers says how much is writer shift rather than resolution.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "scripts")]

import docblock  # noqa: E402  (scripts/, the shared doc-block writer)
import ood as ood_benchmark  # noqa: E402  (benchmarks/ood.py: the serving-path predictor)

from backend.model.preprocessing import preprocess  # noqa: E402
from visionctl.ml import evaluation, oodeval, synth  # noqa: E402
from visionctl.ml.data import load_split, split_holdout  # noqa: E402
from visionctl.ml.oodfit import HOLDOUT_SEED  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "resolution_ceiling.json"
TRAIN_SEED = 5000  # + epoch: apart from training's (config seed), the held-out mix's (101-104) and EVAL_SEED


def _lowres(side: int):
    return (lambda d, rng: synth.lowres_grid(d, rng, side)), (lambda d, rng: synth.lowres(d, rng, side))


# Kind → (cells renderer, picture renderer, side of the cells, rng stream name). The stream names are
# oodeval's, so the pictures are the very ones of the resolution curve and the optdigits set.
KINDS = {**{f"lowres-{s}": (*_lowres(s), s, f"lowres-{s}") for s in (6, 8, 10)},
         "optdigits-8x8": (synth.optdigits_grid, synth.optdigits, 8, "optdigits-8x8")}
SHORT_KINDS = ("lowres-8",)
# The native specialist's accuracy, per kind. Short mode (10,000 training digits, 4 epochs) reads 8-px test
# pictures at 0.95; below 0.90 the cells or the training loop are broken.
BARS = {"lowres-8": 0.90}


class Specialist(nn.Module):
    """Three 3×3 conv layers (32-64-128, batch norm) and a 256-unit head: the cells' side in, 10 out.
    28×28 inputs (the served view) pool twice so it costs about what an 8×8 input does."""

    def __init__(self, side: int):
        super().__init__()
        layers, pools = [], 2 if side >= 20 else (1 if side >= 12 else 0)
        for i, (a, b) in enumerate(((1, 32), (32, 64), (64, 128))):
            layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
            if i < pools:
                layers.append(nn.MaxPool2d(2))
        out = side // 2 ** pools
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * out * out, 256),
                                 nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _jitter(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small rotation and shift of the 28×28 digit before rendering: the usual MNIST augmentation."""
    if rng.random() < 0.7:
        return np.asarray(Image.fromarray(d).rotate(rng.uniform(-10, 10), resample=Image.BILINEAR,
                                                    translate=(rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5))))
    return d


def _tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.tensor(np.stack(arrays), dtype=torch.float32)[:, None]


def train_specialist(view, side: int, images: np.ndarray, labels: np.ndarray, epochs: int, name: str) -> nn.Module:
    """``view(digit, rng)`` → one training array in [0, 1]; a fresh rendering of every digit each epoch."""
    torch.manual_seed(0)
    model = Specialist(side)
    y = torch.tensor(labels, dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * -(-len(y) // 128))
    for epoch in range(epochs):
        x = _tensor([view(_jitter(d, rng), rng) for i, d in enumerate(images)
                     for rng in (synth.rng_for(TRAIN_SEED + epoch, name, i),)])
        model.train()
        for batch in torch.randperm(len(y)).split(128):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def specialist_accuracy(model: nn.Module, x: torch.Tensor, labels: np.ndarray) -> float:
    with torch.no_grad():
        return round(float((model(x).argmax(1).numpy() == labels).mean()), 4)


def score_shipped(kind: str, shipped, splits: tuple, n: int) -> dict:
    """The shipped model's rows: the kind's test pictures and the held-out tail's, through the serving path."""
    _, picture, _, stream = KINDS[kind]
    _, holdout, test = splits
    predict = ood_benchmark.predictor(shipped)

    def row(images, labels, seed):
        pics = np.stack([preprocess(picture(d, synth.rng_for(seed, stream, i)), "digit") for i, d in enumerate(images)])
        return oodeval.scores_row(*oodeval.predict_all(predict, pics), labels, shipped.card.ood_threshold)

    return {"shipped_test": row(test.images[:n], test.labels[:n], oodeval.EVAL_SEED),
            "shipped_heldout_tail": row(holdout.images[:n], holdout.labels[:n], HOLDOUT_SEED)}


def measure(kind: str, shipped, splits: tuple, n: int, n_train: int, epochs: int, served_view: bool) -> dict:
    """``splits``: the train file's training part and held-out tail, and the test file."""
    cells, picture, side, stream = KINDS[kind]
    train, _, test = splits
    t0 = time.perf_counter()
    y = test.labels[:n]
    out = {"side": side, "pictures": n, **score_shipped(kind, shipped, splits, n)}
    tr_x, tr_y = train.images[:n_train], train.labels[:n_train]
    # Each view draws first from the picture's rng, so on test they see the very pictures scored above.
    views = {"native_specialist_test": (lambda d, rng: cells(d, rng) / 255.0, side)}
    if served_view:
        views["served_view_specialist_test"] = (lambda d, rng: preprocess(picture(d, rng), "digit"), 28)
    for key, (view, view_side) in views.items():
        specialist = train_specialist(view, view_side, tr_x, tr_y, epochs, f"{key}-{kind}")
        x = _tensor([view(d, synth.rng_for(oodeval.EVAL_SEED, stream, i)) for i, d in enumerate(test.images[:n])])
        out[key] = specialist_accuracy(specialist, x, y)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def check(results: dict) -> list[str]:
    measured = {kind: e["native_specialist_test"] for kind, e in results["kinds"].items()}
    return [f"{kind}: native specialist {measured[kind]} < {bar}" for kind, bar in BARS.items()
            if kind in measured and measured[kind] < bar]


def table(results: dict) -> str:
    lines = ["| pictures | shipped model, test writers | shipped model, held-out train-file writers | "
             "specialist on the served 28×28 | specialist on the raw cells |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for kind, e in results["kinds"].items():
        served = e.get("served_view_specialist_test")
        lines.append(f"| {kind} | {e['shipped_test']['accuracy']:.1%} | {e['shipped_heldout_tail']['accuracy']:.1%} | "
                     f"{'—' if served is None else f'{served:.1%}'} | {e['native_specialist_test']:.1%} |")
    return "\n".join(lines)


def write_doc(results: dict, check: bool = False) -> int:
    return docblock.write(ROOT / "docs" / "model.md", "resolution-ceiling", table(results), check=check,
                          script="../benchmarks/resolution_ceiling.py --doc")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ood_benchmark.add_model_args(p)
    p.add_argument("--short", action="store_true", help="CI: 8 px only, 300 pictures, 10,000 training digits for "
                                                        "4 epochs, no served-view specialist; fail below the bars")
    p.add_argument("--rescore", action="store_true",
                   help="a new release: re-score only the shipped model's columns of the saved --out run (the "
                        "specialists never read the shipped model, so their figures stand)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--doc", action="store_true", help="only rewrite docs/model.md's table from --out")
    args = p.parse_args(argv)
    if args.doc:
        return write_doc(json.loads(Path(args.out).read_text()))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    shipped = evaluation.load_model("mnist", args.models_dir)
    data = Path(args.data_dir) / "mnist"
    splits = (*split_holdout(load_split("mnist", "train", data)), load_split("mnist", "test", data))
    if args.rescore:
        results = json.loads(Path(args.out).read_text())
        results["specialists_created"] = results.get("specialists_created", results["created"])
        results.update(model=shipped.card.version, threshold=shipped.card.ood_threshold,
                       created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        for kind, e in results["kinds"].items():
            e.update(score_shipped(kind, shipped, splits, results["pictures"]))
            print(kind, json.dumps(e), flush=True)
        return _finish(results, args.out)
    n, n_train, epochs = (300, 10000, 4) if args.short else (1000, 30000, 6)
    results = {"short": args.short, "pictures": n, "training_digits": n_train, "epochs": epochs,
               "model": shipped.card.version, "threshold": shipped.card.ood_threshold,
               "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}",
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kinds": {}}
    for kind in SHORT_KINDS if args.short else KINDS:
        results["kinds"][kind] = measure(kind, shipped, splits, n, n_train, epochs, served_view=not args.short)
        print(kind, json.dumps(results["kinds"][kind]), flush=True)
    return _finish(results, args.out)


def _finish(results: dict, out: str) -> int:
    print(table(results))
    results["failures"] = check(results)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    for f in results["failures"]:
        print("BAR:", f, file=sys.stderr)
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
