"""Model releases in the backend: state file transitions, the gate on real candidates, the judge's
policy, and a real server applying start / promote / rollback (HTTP routes, canary, shadow)."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from backend.model.inference import load_model
from backend.releases import gate, golden, judge, record, store
from backend.releases.policy import Policy, PolicyError, parse_assignments
from backend.releases.record import Layout, TransitionError
from devkit.backend_server import BackendServer


def version_of(folder: Path) -> str:
    return json.loads((folder / "mnist.json").read_text())["version"]


def test_policy_overrides_are_checked():
    assert Policy.from_dict({"min_requests": "10", "auto": "false"}) == Policy(min_requests=10, auto=False)
    assert parse_assignments(["min_seconds=2.5", "auto=no"]) == {"min_seconds": 2.5, "auto": False}
    for bad in (["nope=1"], ["min_requests=x"], ["promote_agreement=2"], ["min_requests"]):
        with pytest.raises(PolicyError):
            parse_assignments(bad)


def test_transitions_keep_an_audit_history(tmp_path):
    layout = Layout.for_models_dir(tmp_path)
    with record.update(layout, "mnist") as state:
        record.start(state, "v2", "v1", "canary", 10, {}, {"passed": True}, "tester")
    with record.update(layout, "mnist") as state:
        with pytest.raises(TransitionError, match="already being released"):
            record.start(state, "v3", "v1", "canary", 10, {}, {}, "tester")
        record.promote(state, "v1", "tester", "looks good")
    state = record.read(layout, "mnist")
    assert (state.stable, state.candidate, state.previous) == ("v2", None, ["v1"])
    assert state.role("v1") == "retired" and state.role("v2") == "stable"
    with record.update(layout, "mnist") as state:
        record.rollback(state, "v2", "tester", "back")
    state = record.read(layout, "mnist")
    assert state.stable == "v1" and state.previous == []
    assert [h["action"] for h in state.history] == ["start", "promote", "rollback"]
    assert all(h["at"] and h["actor"] == "tester" for h in state.history)
    assert state.decisions == {"start": 1, "promote": 1, "rollback": 1}
    with record.update(layout, "mnist") as state, pytest.raises(TransitionError, match="nothing to roll back"):
        record.rollback(state, "v1", "tester", "again")
    assert not list(layout.releases_dir.glob(".mnist.json.*"))  # atomic writes leave no temporary file


def test_concurrent_writers_lose_no_decision(tmp_path):
    layout = Layout.for_models_dir(tmp_path)

    def write(n):
        for i in range(20):
            with record.update(layout, "mnist") as state:
                state.record("start", f"writer {n}", str(i), None)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert record.read(layout, "mnist").decisions["start"] == 80


@pytest.fixture(scope="module")
def golden_mnist(models_dir):
    return golden.load(models_dir / "golden" / "mnist.npz", "mnist")


def test_golden_set_belongs_to_the_name(golden_mnist, models_dir):
    assert len(golden_mnist.labels) == 1000 and golden_mnist.images.shape == (1000, 28, 28)
    assert 0.0 <= golden_mnist.images.min() and golden_mnist.images.max() <= 1.0
    stable = load_model(models_dir, "mnist", batching=False)
    assert gate.accuracy(stable, golden_mnist) > 0.98


def test_gate_refuses_a_worse_candidate_with_the_figures(candidates, models_dir, golden_mnist):
    stable = load_model(models_dir, "mnist", batching=False)
    worse = load_model(candidates["worse"], "mnist", batching=False)
    result = gate.run(worse, stable, golden_mnist, Policy())
    assert not result.passed and result.check == "accuracy"
    f = result.figures
    assert f["accuracy"] < f["floor"] == pytest.approx(f["stable_accuracy"] - 0.005)
    assert f"accuracy {f['accuracy']:.4f} is below the floor {f['floor']:.4f}" in result.reason


def test_gate_passes_good_and_biased_candidates(candidates, models_dir, golden_mnist):
    stable = load_model(models_dir, "mnist", batching=False)
    for kind in ("good", "biased"):
        result = gate.run(load_model(candidates[kind], "mnist", batching=False), stable, golden_mnist, Policy())
        assert result.passed, result.reason
        assert result.figures["latency_ms"] <= result.figures["latency_budget_ms"]


def test_gate_refuses_a_schema_change_and_a_slow_model(candidates, models_dir, golden_mnist, tmp_path):
    stable = load_model(models_dir, "mnist", batching=False)
    fashion = load_model(models_dir, "fashion-mnist", batching=False)  # other labels and preprocessing
    result = gate.run(fashion, stable, golden_mnist, Policy())
    assert not result.passed and result.check == "schema" and "labels" in result.reason
    good = load_model(candidates["good"], "mnist", batching=False)
    result = gate.run(good, stable, golden_mnist, Policy(latency_factor=0.01, latency_slack_ms=0.0))
    assert not result.passed and result.check == "latency"


def with_ood_output(models_dir: Path, out: Path, threshold_quantile: float, golden_set) -> Path:
    """The shipped weights exported with a second output ``ood_score`` (energy, -logsumexp of the
    logits) as the OOD interface has it, and a card whose threshold keeps ``threshold_quantile`` of
    the golden images in distribution."""
    import torch
    import torch.nn.functional as F

    from backend.model import card as modelcard
    from visionctl.ml.model import load

    net = load(torch.load(models_dir / "mnist.pt", weights_only=True)).eval()

    class WithOod(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            logits = self.net.head(self.net.features(x))
            return F.log_softmax(logits, dim=1), -torch.logsumexp(logits, dim=1)

    model = WithOod().eval()
    path = out / "mnist.onnx"
    out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["log_probs", "ood_score"],
                      dynamic_axes={"input": {0: "batch"}, "log_probs": {0: "batch"}, "ood_score": {0: "batch"}})
    with torch.no_grad():
        x = (torch.from_numpy(golden_set.images) - 0.1307) / 0.3081
        scores = model(x.unsqueeze(1))[1].numpy()
    raw = json.loads((models_dir / "mnist.json").read_text())
    sha = modelcard.sha256_file(path)
    raw.update(version=f"ood-{sha[:8]}", artifacts={"onnx": {"file": "mnist.onnx", "sha256": sha}})
    threshold = float(np.quantile(scores, threshold_quantile))
    raw["ood"] = {**raw["ood"], "method": "energy", "output": "ood_score", "threshold": threshold,
                  "fitted_on": "golden set (test)", "target_in_distribution": 0.975}
    (out / "mnist.json").write_text(json.dumps(raw, indent=2))
    return out


def test_gate_checks_ood_behaviour_when_the_card_has_it(candidates, models_dir, golden_mnist, tmp_path):
    stable = load_model(models_dir, "mnist", batching=False)
    fit = load_model(with_ood_output(models_dir, tmp_path / "fit", 0.99, golden_mnist), "mnist", batching=False)
    result = gate.run(fit, stable, golden_mnist, Policy())
    assert result.passed, result.reason
    # Against stable's own share of golden images called unusual (the shipped models have the score).
    assert result.figures["ood_share"] == pytest.approx(0.01, abs=0.002)
    limit = result.figures["stable_ood_share"] + Policy().max_ood_increase
    assert result.figures["ood_share_limit"] == pytest.approx(limit)
    jumpy = load_model(with_ood_output(models_dir, tmp_path / "jumpy", 0.5, golden_mnist), "mnist", batching=False)
    result = gate.run(jumpy, stable, golden_mnist, Policy())
    assert not result.passed and result.check == "ood" and "0.5" in result.reason
    # a candidate without the score cannot even load (the card's ood section is required), so the
    # gate's own schema check is what stops a card naming an output the graph lacks:
    # a card that names an output the graph lacks is refused, not a crash
    good = load_model(candidates["good"], "mnist", batching=False)
    good.card.raw["ood"] = {**good.card.raw["ood"], "output": "novelty_score"}
    result = gate.run(good, stable, golden_mnist, Policy())
    assert not result.passed and result.check == "schema"


def test_judge_policy():
    policy = Policy(min_requests=100, min_seconds=10, breach_min_requests=20)

    def figures(agree, disagree, seconds=20, errors=0):
        totals = {"agree": agree, "disagree": disagree, "candidate_requests": agree + disagree,
                  "candidate_errors": errors, "candidate_seconds": 1.0, "candidate_runs": 100,
                  "stable_seconds": 1.0, "stable_runs": 100, "candidate_images": agree + disagree,
                  "candidate_ood": 0, "stable_images": 100, "stable_ood": 0}
        return judge.summarise(totals, {}, seconds)

    assert judge.decide(figures(10, 5), policy)[0] is None  # too few to judge
    assert judge.decide(figures(18, 4), policy)[0] == "rollback"  # 0.82 agreement after 22
    assert judge.decide(figures(99, 1, seconds=5), policy)[0] is None  # not long enough yet
    action, reason = judge.decide(figures(99, 1), policy)
    assert action == "promote" and "0.9900" in reason
    assert judge.decide(figures(200, 0, errors=30), policy)[0] == "rollback"


def test_store_copies_an_artifact_once(candidates, tmp_path):
    layout = Layout.for_models_dir(tmp_path)
    card = store.add(layout, "mnist", candidates["good"])
    assert store.add(layout, "mnist", candidates["good"]).version == card.version
    assert store.versions(layout, "mnist") == [card.version]
    assert store.model_dir(layout, "mnist", card.version) == layout.version_dir("mnist", card.version)


# --- a real server --------------------------------------------------------------------------


def png_body(path: Path) -> dict:
    return {"base64": base64.b64encode(path.read_bytes()).decode()}


def start_release(layout: Layout, folder: Path, mode="canary", weight=50, **policy):
    """What `visionctl release start` records (tested end to end in tests/visionctl)."""
    version = store.add(layout, "mnist", folder).version
    with record.update(layout, "mnist") as state:
        stable = state.stable or store.base_version(layout, "mnist")
        record.start(state, version, stable, mode, weight, policy, {"passed": True}, "test")
    return version


def wait_until(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


def served(server, client=None) -> str:
    headers = {"X-Client-ID": client} if client else {}
    r = requests.post(server.url + "/predict", json=png_body(SAMPLE), headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "mnist" / "7-7.png"


def test_server_canary_versions_and_promotion(release_models, candidates):
    layout = Layout.for_models_dir(release_models)
    base = store.base_version(layout, "mnist")
    with BackendServer(model_dir=release_models, env={"VISION_MODELS": "mnist"}) as server:
        assert served(server) == base
        versions = requests.get(server.url + "/v1/models/mnist/versions", timeout=5).json()
        assert versions["stable"] == base and versions["release"] is None
        good = start_release(layout, candidates["good"], weight=50, auto="false")
        t0 = time.monotonic()
        wait_until(lambda: requests.get(server.url + "/v1/models/mnist/versions", timeout=5).json()["release"])
        assert time.monotonic() - t0 < 5
        # sticky per client: each id keeps its version; both versions get some of the ids
        by_client = {c: {served(server, c) for _ in range(3)} for c in (f"client-{i}" for i in range(20))}
        assert all(len(v) == 1 for v in by_client.values())
        assert {v for s in by_client.values() for v in s} == {base, good}
        rows = {r["version"]: r for r in requests.get(server.url + "/v1/models/mnist/versions", timeout=5)
                .json()["versions"]}
        assert rows[base]["role"] == "stable" and rows[good]["role"] == "candidate"
        assert rows[good]["gate"]["passed"] and rows[good]["served"]
        # versioned routes, v1 and v2
        r = requests.post(f"{server.url}/v1/models/mnist/versions/{good}/predict", json=png_body(SAMPLE), timeout=5)
        assert r.status_code == 200 and r.json()["model_version"] == good
        infer = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                             "data": [png_body(SAMPLE)["base64"]]}]}
        r = requests.post(f"{server.url}/v2/models/mnist/versions/{base}/infer", json=infer, timeout=5)
        assert r.status_code == 200 and r.json()["model_version"] == base
        r = requests.post(f"{server.url}/v1/models/mnist/versions/nope/predict", json=png_body(SAMPLE), timeout=5)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = requests.post(f"{server.url}/v2/models/mnist/versions/nope/infer", json=infer, timeout=5)
        assert r.status_code == 404 and "nope" in r.json()["error"]
        metrics = requests.get(server.metrics_url, timeout=5).text
        assert f'vision_release_requests_total{{model="mnist",role="candidate",version="{good}"}}' in metrics
        assert 'vision_release_compared_images_total{model="mnist",result="agree"' in metrics
        assert f'vision_release_version_role{{model="mnist",role="candidate",version="{good}"}} 1.0' in metrics
        # promote by hand: applied within 5 s, unversioned routes then answer with the new stable
        with record.update(layout, "mnist") as state:
            record.promote(state, base, "test", "by hand")
        t0 = time.monotonic()
        wait_until(lambda: served(server, "client-0") == good and served(server, "client-1") == good)
        assert time.monotonic() - t0 < 5
        assert requests.get(server.url + "/readyz", timeout=5).json()["models"]["mnist"] == good
        with record.update(layout, "mnist") as state:
            record.rollback(state, good, "test", "back")
        wait_until(lambda: served(server) == base)


def test_server_gate_refuses_and_stable_keeps_serving(release_models, candidates):
    """A candidate recorded without the CLI's gate is still gated by the server before any request."""
    layout = Layout.for_models_dir(release_models)
    base = store.base_version(layout, "mnist")
    with BackendServer(model_dir=release_models, env={"VISION_MODELS": "mnist"}) as server:
        worse = start_release(layout, candidates["worse"], weight=100)
        state = wait_until(lambda: (s := record.read(layout, "mnist")).candidate is None and s)
        entry = state.history[-1]
        assert entry["action"] == "refused" and entry["actor"].startswith("gate")
        assert entry["figures"]["accuracy"] < entry["figures"]["floor"]
        assert state.role(worse) == "refused"
        assert {served(server, f"c{i}") for i in range(10)} == {base}


def test_judge_rolls_back_a_breach_and_shadow_never_answers(release_models, candidates, shared_datasets):
    from visionctl.ml.data import load_split

    test = load_split("mnist", "test", shared_datasets / "mnist")
    cut = [np.where(np.arange(28)[None, :] < 14, 0, test.images[k]) for k in range(5, 3000, 10)]
    import io

    from PIL import Image

    def body(pixels):
        buf = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8), "L").save(buf, format="PNG")
        return {"base64": base64.b64encode(buf.getvalue()).decode()}

    bodies = [body(p) for p in cut]
    layout = Layout.for_models_dir(release_models)
    base = store.base_version(layout, "mnist")
    with BackendServer(model_dir=release_models, env={"VISION_MODELS": "mnist"}) as server:
        biased = start_release(layout, candidates["biased"], mode="shadow", breach_min_requests=100)
        wait_until(lambda: requests.get(server.url + "/v1/models/mnist/versions", timeout=5).json()["release"])
        session = requests.Session()
        seen = set()
        # Up to three passes over the cut digits: the comparisons run off the request thread, so on a
        # busy machine the judge may count its 100th one only after the first pass.
        for i in range(3 * len(bodies)):
            r = session.post(server.url + "/predict", json=bodies[i % len(bodies)], timeout=10)
            assert r.status_code == 200
            seen.add(r.json()["model_version"])
            state = record.read(layout, "mnist")
            if state.candidate is None:
                break
        assert seen == {base}  # shadow: users always get stable
        state = wait_until(lambda: (s := record.read(layout, "mnist")).candidate is None and s, timeout=30)
        entry = state.history[-1]
        assert entry["action"] == "rollback" and entry["actor"].startswith("judge"), entry
        assert entry["version"] == biased and "agreement" in entry["reason"]
        assert entry["figures"]["agreement"] < 0.95 and entry["figures"]["compared_images"] >= 100
        metrics = requests.get(server.metrics_url, timeout=5).text
        wait_until(lambda: 'vision_release_decisions{action="rollback",model="mnist"} 1.0'
                   in requests.get(server.metrics_url, timeout=5).text)
        assert f'vision_release_requests_total{{model="mnist",role="shadow",version="{biased}"}}' in metrics


def test_judge_promotes_after_enough_agreeing_traffic(release_models, candidates):
    layout = Layout.for_models_dir(release_models)
    with BackendServer(model_dir=release_models, env={"VISION_MODELS": "mnist"}) as server:
        good = start_release(layout, candidates["good"], weight=50, min_requests=40, min_seconds=2)
        wait_until(lambda: requests.get(server.url + "/v1/models/mnist/versions", timeout=5).json()["release"])
        session = requests.Session()
        samples = sorted((SAMPLE.parent).glob("*.png"))
        deadline = time.monotonic() + 20
        while record.read(layout, "mnist").candidate is not None and time.monotonic() < deadline:
            for path in samples:
                assert session.post(server.url + "/predict", json=png_body(path), timeout=10).status_code == 200
        state = record.read(layout, "mnist")
        entry = state.history[-1]
        assert entry["action"] == "promote" and entry["actor"].startswith("judge") and state.stable == good, entry
        assert entry["figures"]["compared_images"] >= 40 and entry["figures"]["agreement"] >= 0.98
        wait_until(lambda: served(server) == good)


def test_state_and_versions_mounted_elsewhere(release_models, candidates, tmp_path):
    """As on a cluster: the state from a ConfigMap mount, the versions from an init-filled emptyDir."""
    layout = Layout.for_models_dir(release_models, releases_dir=tmp_path / "cm", versions_dir=tmp_path / "versions")
    good = start_release(layout, candidates["good"], weight=100)
    env = {"VISION_MODELS": "mnist", "VISION_RELEASES_DIR": str(tmp_path / "cm"),
           "VISION_VERSIONS_DIR": str(tmp_path / "versions")}
    with BackendServer(model_dir=release_models, env=env) as server:
        wait_until(lambda: served(server, "x") == good)
