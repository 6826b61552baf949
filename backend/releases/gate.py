"""The gate a candidate passes before it may answer a single request.

Run by every serving process on the candidate it has just loaded (and by ``visionctl release
start`` first, so a refusal is reported at once), always against the stable version being served:

1. **schema** — the ONNX input and class output (names, element types, shapes), labels and
   preprocessing equal the name's contract as the stable version has it;
2. **accuracy** — on the name's golden set, at or above ``stable − max_accuracy_drop``;
3. **latency** — median single-image run within ``latency_factor × stable + latency_slack_ms``;
4. **out-of-distribution** (when the candidate's card has an ``ood`` section) — the share of golden
   (in-distribution) images it calls unusual is at most stable's (or its card's own target) plus
   ``max_ood_increase``, and stable's ``ood`` output, if any, is still there.

The first failed check is the refusal's reason; every figure measured is kept with the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from backend.releases.golden import GoldenSet
from backend.releases.policy import Policy

LATENCY_RUNS = 25
CHUNK = 256


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    figures: dict = field(default_factory=dict)
    check: str = ""  # the failed check ("schema", "accuracy", "latency", "ood"), "" when passed

    def to_dict(self) -> dict:
        return {"passed": self.passed, "check": self.check, "reason": self.reason, "figures": self.figures}


def probabilities(result) -> np.ndarray:
    """Class probabilities from ``Model.run``/``predict`` (an array, or an object with ``probs``)."""
    return getattr(result, "probs", result)


def accuracy(model, golden: GoldenSet) -> float:
    correct = 0
    for start in range(0, len(golden.labels), CHUNK):
        probs = probabilities(model.run(golden.images[start: start + CHUNK]))
        correct += int((probs.argmax(axis=1) == golden.labels[start: start + CHUNK]).sum())
    return correct / len(golden.labels)


def schema(model) -> dict:
    """The contract part of a model: what clients and the pipeline depend on."""
    card, session = model.card, model.session

    def describe(arg) -> dict:
        return {"name": arg.name, "type": arg.type, "shape": [d if isinstance(d, int) else None for d in arg.shape]}

    inputs = {i.name: describe(i) for i in session.get_inputs()}
    outputs = {o.name: describe(o) for o in session.get_outputs()}
    ood = (card.raw.get("ood") or {}).get("output")
    return {"input": inputs.get(card.input_name), "output": outputs.get(card.output_name),
            "ood_output": outputs.get(ood) if ood else None, "labels": list(card.labels),
            "preprocessing": card.preprocessing}


def median_latency_ms(candidate, stable) -> tuple[float, float]:
    """Median single-image run time of both, interleaved so machine noise hits both alike."""
    x = np.zeros((1, 28, 28), np.float32)
    for model in (candidate, stable):
        model.run(x)
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(LATENCY_RUNS):
        for i, model in enumerate((candidate, stable)):
            start = time.perf_counter()
            model.run(x)
            times[i].append(time.perf_counter() - start)
    return float(np.median(times[0]) * 1e3), float(np.median(times[1]) * 1e3)


def ood_share(model, golden: GoldenSet) -> float | None:
    """Share of golden images the model calls out-of-distribution (None: the model has no score)."""
    ood = model.card.raw.get("ood") or {}
    output, threshold = ood.get("output"), ood.get("threshold")
    if not output or threshold is None:
        return None
    card = model.card
    x = ((golden.images - np.float32(card.mean)) / np.float32(card.std)).reshape(-1, 1, 28, 28)
    (scores,) = model.session.run([output], {card.input_name: x.astype(np.float32)})
    return float((np.asarray(scores).reshape(-1) > float(threshold)).mean())


def run(candidate, stable, golden: GoldenSet, policy: Policy, stable_accuracy: float | None = None) -> GateResult:
    """Gate ``candidate`` against ``stable`` (both loaded ``backend.model.inference.Model``s)."""
    figures: dict = {"candidate": candidate.card.version, "stable": stable.card.version,
                     "golden_images": int(len(golden.labels)), "golden_source": golden.source}
    want, got = schema(stable), schema(candidate)
    for key in ("input", "output", "labels", "preprocessing"):
        if want[key] != got[key]:
            return GateResult(False, f"schema: {key} is {got[key]}, the contract of {golden.name!r} (stable "
                                     f"{stable.card.version}) says {want[key]}", figures, "schema")
    ood_name = (candidate.card.raw.get("ood") or {}).get("output")
    if ood_name and got["ood_output"] is None:
        return GateResult(False, f"schema: the card names the out-of-distribution output {ood_name!r}, "
                                 "the graph has no such output", figures, "schema")
    if want["ood_output"] is not None and got["ood_output"] != want["ood_output"]:
        return GateResult(False, f"schema: stable has the out-of-distribution output {want['ood_output']}, "
                                 f"the candidate has {got['ood_output']}", figures, "schema")

    acc = accuracy(candidate, golden)
    base = accuracy(stable, golden) if stable_accuracy is None else stable_accuracy
    floor = base - policy.max_accuracy_drop
    figures.update(accuracy=round(acc, 6), stable_accuracy=round(base, 6), floor=round(floor, 6))
    if acc + 1e-12 < floor:
        return GateResult(False, f"golden-set accuracy {acc:.4f} is below the floor {floor:.4f} (stable {base:.4f} "
                                 f"- max_accuracy_drop {policy.max_accuracy_drop:g}) on {len(golden.labels)} "
                                 f"{golden.name} golden images", figures, "accuracy")

    cand_ms, stable_ms = median_latency_ms(candidate, stable)
    budget = stable_ms * policy.latency_factor + policy.latency_slack_ms
    figures.update(latency_ms=round(cand_ms, 4), stable_latency_ms=round(stable_ms, 4),
                   latency_budget_ms=round(budget, 4))
    if cand_ms > budget:
        return GateResult(False, f"latency: median {cand_ms:.3f} ms per image exceeds the budget {budget:.3f} ms "
                                 f"({policy.latency_factor:g} x stable {stable_ms:.3f} ms "
                                 f"+ {policy.latency_slack_ms:g} ms)",
                          figures, "latency")

    if candidate.card.raw.get("ood"):
        share = ood_share(candidate, golden)
        stable_share = ood_share(stable, golden)
        target = stable_share
        if target is None:
            target = 1.0 - float(candidate.card.raw["ood"].get("target_in_distribution", 0.975))
        limit = target + policy.max_ood_increase
        figures.update(ood_share=share, stable_ood_share=stable_share, ood_share_limit=round(limit, 6))
        if share is None:
            return GateResult(False, "ood: the card has an ood section but no usable output/threshold", figures, "ood")
        if share > limit:
            return GateResult(False, f"ood: {share:.4f} of the golden (in-distribution) images are called unusual, "
                                     f"above the limit {limit:.4f}", figures, "ood")

    return GateResult(True, f"passed: golden-set accuracy {acc:.4f} >= floor {floor:.4f} (stable {base:.4f}); "
                            f"latency {cand_ms:.3f} ms <= {budget:.3f} ms", figures)
