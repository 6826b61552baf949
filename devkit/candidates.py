"""Candidate model versions for release tests and benchmarks, made from the shipped weights.

Each is a real artifact written the way an ML team hands one over: a state dict in a folder, then
``visionctl export mnist --models-dir <folder>`` (ONNX + card with its own version):

* ``good``   — weights nudged by noise of 0.05 × their mean magnitude: same accuracy, new version;
* ``worse``  — noise of 0.6 × their mean magnitude: golden-set accuracy far below stable's (43 % on the
  retrained model), the gate refuses it;
* ``biased`` — the "1" logit raised by 1: still 99.0 % on the clean golden set (stable 99.4 %, the gate
  passes it), but on digits with their left half cut off it answers "1" far more often than stable
  (78 % agreement there, measured): the judge rolls it back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("good", "worse", "biased")


def make(kind: str, out_dir: Path, data_dir: Path, name: str = "mnist") -> Path:
    """Write ``out_dir/<name>.pt`` for ``kind`` and export it there; returns ``out_dir``."""
    import torch

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = torch.load(ROOT / "models" / f"{name}.pt", weights_only=True)
    generator = torch.Generator().manual_seed(1)
    if kind == "biased":
        state["fc2.bias"] = state["fc2.bias"].clone()
        state["fc2.bias"][1] += 1.0
    else:
        scale = 0.05 if kind == "good" else 0.6
        state = {k: v + torch.randn(v.shape, generator=generator) * scale * v.abs().mean() for k, v in state.items()}
    torch.save(state, out_dir / f"{name}.pt")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "visionctl", "export", name, "--models-dir", str(out_dir),
                    "--data-dir", str(data_dir / name)], check=True, env=env, capture_output=True, cwd=ROOT)
    return out_dir
