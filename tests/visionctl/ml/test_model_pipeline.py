"""Model pipeline: IDX data, the assignment's Net, training smoke run, ONNX export, model cards."""

from __future__ import annotations

import gzip
import hashlib
import json
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from repo import load_benchmark
from typer.testing import CliRunner

from backend.model import card as modelcard
from visionctl.cli import app
from visionctl.ml import data as vdata
from visionctl.ml import export as vexport
from visionctl.ml import synth, train_config, training
from visionctl.ml.model import ARCHITECTURES, Net, VggNet, arch_of, build, load
from visionctl.ml.pipeline import weights_provenance

runner = CliRunner()


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an unsigned-byte IDX file (the MNIST on-disk format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_dataset(tmp_path, monkeypatch):
    """A 40-image IDX dataset registered as 'mnist' with its own checksums (gz + raw files mixed)."""
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(40) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(20) % 10,
    }
    sums = {}
    for i, (stem, arr) in enumerate(files.items()):
        raw = idx_bytes(np.asarray(arr))
        sums[stem] = hashlib.sha256(raw).hexdigest()
        if i % 2:
            (tmp_path / stem).write_bytes(raw)
        else:
            (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(raw))
    spec = vdata.DatasetSpec("mnist", "MNIST", vdata.DATASETS["mnist"].labels, "digit", sums)
    monkeypatch.setitem(vdata.DATASETS, "mnist", spec)
    return tmp_path, files


class AssignmentNet(nn.Module):
    """The original assignment's network, written out independently to prove compatibility."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.fc2(self.dropout2(F.relu(self.fc1(x))))
        return F.log_softmax(x, dim=1)


# --- data ---------------------------------------------------------------------------------------

def test_parse_idx_roundtrip():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(vdata.parse_idx(idx_bytes(arr)), arr)


@pytest.mark.parametrize("blob", [b"", b"\x00\x00\x0d\x01" + b"\x00" * 8, idx_bytes(np.zeros((3, 2)))[:-1]])
def test_parse_idx_rejects_bad_files(blob):
    with pytest.raises(ValueError):
        vdata.parse_idx(blob)


def test_load_split_reads_gz_and_raw(tiny_dataset):
    directory, files = tiny_dataset
    split = vdata.load_split("mnist", "train", directory)
    np.testing.assert_array_equal(split.images, files["train-images-idx3-ubyte"])
    assert split.labels.dtype == np.int64 and split.labels.tolist() == list(files["train-labels-idx1-ubyte"])
    # The parent folder works too (VISION_DATA_DIR=../shared/datasets serves both datasets).
    (directory.parent / "mnist").symlink_to(directory)
    assert vdata.load_split("mnist", "test", directory.parent).images.shape == (20, 28, 28)


def test_checksum_mismatch_is_one_clear_line(tiny_dataset):
    directory, _ = tiny_dataset
    raw = (directory / "t10k-labels-idx1-ubyte").read_bytes()
    (directory / "t10k-labels-idx1-ubyte").write_bytes(raw[:-1] + b"\x03")  # last label was 9
    with pytest.raises(vdata.DatasetError) as exc:
        vdata.load_split("mnist", "test", directory)
    assert "checksum mismatch" in str(exc.value) and "\n" not in str(exc.value)


def test_missing_dataset_cli_error_has_the_fix(tmp_path):
    result = runner.invoke(app, ["train", "mnist", "--data-dir", str(tmp_path), "--models-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "not found" in result.output and "--data-dir" in result.output
    assert "Traceback" not in result.output


def test_dataset_specs_are_the_served_models():
    """Every trainable dataset is a model the backend serves, with a preprocessing mode it knows
    (export builds the card from the spec, and the backend refuses unknown modes at start)."""
    from backend.contract import MODEL_NAMES

    assert tuple(vdata.DATASETS) == MODEL_NAMES
    assert all(spec.preprocessing in modelcard.PREPROCESSING_MODES for spec in vdata.DATASETS.values())


def test_shared_datasets_verify(shared_datasets):
    for name in vdata.DATASETS:
        split = vdata.load_split(name, "test", shared_datasets / name)
        assert split.images.shape == (10000, 28, 28)
        assert np.bincount(split.labels).min() >= 800


# --- model --------------------------------------------------------------------------------------

def test_state_dict_compatible_with_assignment_net():
    torch.manual_seed(0)
    theirs = AssignmentNet().eval()
    ours = Net().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(ours(x), theirs(x))


def test_augment_keeps_shape_and_range():
    cfg = train_config.make_config("mnist")
    x = training.to_tensor(np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8))
    out = training.augment(x, cfg, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    lo, hi = (0 - training.MEAN) / training.STD, (1 - training.MEAN) / training.STD
    assert out.min() >= lo - 1e-5 and out.max() <= hi + 1e-5
    assert not torch.equal(out, x)


def test_lowres_augmentation_blocks_the_picked_share_and_keeps_the_peak():
    """Picked images become blocky/blurred re-upscalings (fewer distinct values, same peak ink);
    the others are untouched; the background stays black."""
    rng = np.random.default_rng(0)
    images = np.zeros((64, 28, 28), np.uint8)
    images[:, 6:22, 10:18] = rng.integers(128, 256, (64, 16, 8), dtype=np.uint8)
    x = training.to_tensor(images)
    out = training.lowres(x, 0.5, torch.Generator().manual_seed(3))
    changed = [i for i in range(64) if not torch.equal(out[i], x[i])]
    assert 16 <= len(changed) <= 48
    bg = -training.MEAN / training.STD
    for i in changed:
        assert out[i].max() == pytest.approx(float(x[i].max()), abs=1e-4)
        assert out[i][0, 0, 0] <= bg + 1e-4  # the corner stays background
    assert torch.equal(training.lowres(x, 0.0, torch.Generator()), x)


def test_fresh_small_pictures_replace_only_train_digits_with_their_served_small_self():
    """Rows of train digits become a small rendering of that digit as preprocessing serves it (the same
    draws give the same pictures); rendered-pool rows and a zero share leave the batch alone."""
    from backend.model.preprocessing import preprocess

    raw = np.zeros((8, 28, 28), np.uint8)
    for i in range(8):
        raw[i, 4 + i:22, 9:13 + i] = 255
    data = torch.full((12, 1, 28, 28), 5.0)  # no served picture holds this value
    idx = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])  # 8-11: rendered-pool rows
    out = training.fresh_small_pictures(data, idx, raw, 1.0, "digit", np.random.default_rng(4))
    assert torch.equal(out[8:], data[8:]) and torch.equal(data, torch.full_like(data, 5.0))
    replay = np.random.default_rng(4)
    replay.random(12)  # the row draws
    for j in range(8):
        pic = synth.lowres(raw[j], replay) if replay.random() < training.FRESH_SMALL_LOWRES \
            else synth.optdigits(raw[j], replay)
        expect = (torch.from_numpy(preprocess(pic, "digit")) - training.MEAN) / training.STD
        assert torch.allclose(out[j, 0], expect), j
    assert training.fresh_small_pictures(data, idx, raw, 0.0, "digit", np.random.default_rng(4)) is data


def test_fresh_small_outliers_are_the_families_pictures_shrunk_and_served():
    """Each replaced outlier row is a family's picture (drawn by its probability) shrunk to 8-16 px and
    preprocessed as served; the same draws give the same pictures, a zero share leaves the batch alone."""
    from PIL import Image

    from backend.model.preprocessing import preprocess

    def bar(r):  # a random-length stroke on a 64-px canvas
        a = np.zeros((64, 64), np.uint8)
        a[8:8 + int(r.integers(10, 50)), 30:36] = 255
        return Image.fromarray(a)

    def ring(r):
        a = np.zeros((64, 64), np.uint8)
        a[10:54, 10:54] = 255
        a[10 + int(r.integers(3, 10)):44, 20:44] = 0
        return Image.fromarray(a)

    renderers, p = [bar, ring], np.array([0.25, 0.75])
    out = torch.full((6, 1, 28, 28), 5.0)
    got = training.fresh_small_outliers(out, 1.0, renderers, p, "digit", np.random.default_rng(3))
    replay = np.random.default_rng(3)
    replay.random(6)  # the row draws
    for j in range(6):
        picture = synth.shrink(renderers[int(replay.choice(2, p=p))](replay), replay)
        assert max(picture.size) in range(8, 17)
        served = (torch.from_numpy(preprocess(picture, "digit")) - training.MEAN) / training.STD
        assert torch.allclose(got[j, 0], served)
    assert torch.equal(out, torch.full_like(out, 5.0))  # the batch passed in is not changed
    assert training.fresh_small_outliers(out, 0.0, renderers, p, "digit", np.random.default_rng(3)) is out


def test_fresh_small_pictures_are_for_digits_only_and_recorded_when_on():
    """Small pictures are drawn as digits: a clothing recipe asking for them is refused, not trained
    on mislabelled renderings. The card records the share only when it is on, so cards of recipes
    from before the knob still equal their recipe."""
    from visionctl.ml.train_config import make_config
    assert make_config("mnist", fresh_small=0.4).to_dict()["fresh_small"] == 0.4
    assert make_config("mnist", fresh_small_outliers=0.4).to_dict()["fresh_small_outliers"] == 0.4
    off = make_config("mnist", fresh_small=0.0, fresh_small_outliers=0.0).to_dict()
    assert not {"fresh_small", "fresh_small_outliers"} & off.keys()
    with pytest.raises(ValueError, match="mnist only"):
        make_config("fashion-mnist", fresh_small=0.2)


def test_turned_digits_are_never_zeros_or_ones():
    """A turned 0 is still a 0 and a turned 1 a stroke like a 1: neither may become an outlier."""
    images = np.stack([np.full((28, 28), 100 + d, np.uint8) for d in range(10)])  # each digit its own grey
    seen = set()
    for i in range(40):
        v = int(np.asarray(synth.digit_turned(images, np.arange(10), synth.rng_for(1, "t", i)).convert("L"))[14, 14])
        seen.add(v - 100 if 0 <= v - 100 <= 9 else 155 - v)  # as drawn, or inverted
    assert seen and seen <= set(range(2, 10))


@pytest.mark.parametrize("arch,convs", [("net", {"conv1", "conv2"}), ("vgg", {"conv1", "conv2", "conv3", "conv4"})])
@pytest.mark.parametrize("strategy,classifier", [("fc2", {"fc2"}), ("fc1+fc2", {"fc1", "fc2"}),
                                                 ("all", {"fc1", "fc2"})])
def test_finetune_strategies_freeze_the_right_layers(arch, convs, strategy, classifier):
    model = build(arch)
    params = training.set_trainable(model, strategy)
    learning = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    trainable = classifier | (convs if strategy == "all" else set())
    assert learning == trainable and len(params) == 2 * len(trainable)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_state_dict_tells_its_architecture(arch):
    state = build(arch).state_dict()
    assert arch_of(state) == arch and isinstance(load(state), ARCHITECTURES[arch])
    assert arch_of(AssignmentNet().state_dict()) == "net"  # the assignment's checkpoint stays loadable
    state.pop("fc2.bias")
    with pytest.raises(ValueError, match="no known architecture"):
        arch_of(state)


def test_telling_the_architecture_leaves_the_training_rng_alone():
    """Fine-tuning seeds torch, then reads the init weights' architecture: that read must not draw."""
    state = build("vgg").state_dict()
    torch.manual_seed(7)
    before = torch.get_rng_state()
    arch_of(state)
    assert torch.equal(torch.get_rng_state(), before)


def test_vgg_keeps_the_interface_serving_and_ood_rely_on():
    """Same input, same 10 log-probabilities, same 128 penultimate features as the assignment's net."""
    x = torch.randn(3, 1, 28, 28)
    for model in (Net().eval(), VggNet().eval()):
        features = model.features(x)
        assert features.shape == (3, 128) and model(x).shape == (3, 10)
        torch.testing.assert_close(model(x), F.log_softmax(model.head(features), dim=1))


def test_fine_tuning_refuses_weights_of_another_architecture(shared_datasets, tmp_path):
    torch.save(Net().state_dict(), tmp_path / "mnist.pt")
    result = runner.invoke(app, ["train", "fashion-mnist", "--data-dir", str(shared_datasets / "fashion-mnist"),
                                 "--models-dir", str(tmp_path), "--epochs", "1", "--limit", "200"])
    assert result.exit_code == 1 and "holds net weights, not vgg" in result.output
    assert not (tmp_path / "fashion-mnist.onnx").exists()


# --- export -------------------------------------------------------------------------------------

def test_initial_weights_are_named_by_content_and_by_their_place(tmp_path):
    weights = tmp_path / "models" / "mnist.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert weights_provenance(weights, tmp_path / "models") == {"file": "mnist.pt", "sha256": digest}
    # Outside the models dir the path is kept as given.
    assert weights_provenance(weights, tmp_path / "other") == {"file": str(weights), "sha256": digest}


def test_parity_gate_refuses_a_wrong_model():
    torch.manual_seed(0)
    a, b = Net(), Net()
    with pytest.raises(vexport.ExportError):
        vexport.check_parity(a, vexport.onnx_bytes(b), torch.randn(8, 1, 28, 28))


def test_smoke_training_end_to_end_through_export(shared_datasets, tmp_path):
    """Subset, one epoch: train → export → ONNX loads in ORT, matches torch, card validates."""
    result = runner.invoke(app, ["train", "mnist", "--data-dir", str(shared_datasets / "mnist"),
                                 "--models-dir", str(tmp_path), "--epochs", "1", "--limit", "1000"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "mnist.json").read_text())
    validate_card(card, tmp_path)
    assert card["training"]["epochs"] == 1 and card["training"]["limit"] == 1000
    assert card["metrics"]["test_accuracy"] > 0.3  # 1000 images, one epoch: far above chance (0.1)

    # Fine-tune fashion-mnist from those weights with a frozen backbone.
    result = runner.invoke(app, ["train", "fashion-mnist", "--data-dir", str(shared_datasets / "fashion-mnist"),
                                 "--models-dir", str(tmp_path), "--epochs", "1", "--limit", "500",
                                 "--strategy", "fc2"])
    assert result.exit_code == 0, result.output
    fashion = json.loads((tmp_path / "fashion-mnist.json").read_text())
    validate_card(fashion, tmp_path)
    assert fashion["training"]["strategy"] == "fc2" and fashion["labels"][9] == "Ankle boot"
    # Its card names its parent by content, so a copy of the weights in another folder is the same parent.
    assert fashion["training"]["init_weights"] == {"file": "mnist.pt", "sha256": card["artifacts"]["pt"]["sha256"]}
    # fc2-only fine-tuning must leave the convolutions exactly as the MNIST model had them.
    mnist_sd = torch.load(tmp_path / "mnist.pt", weights_only=True)
    fashion_sd = torch.load(tmp_path / "fashion-mnist.pt", weights_only=True)
    torch.testing.assert_close(mnist_sd["conv1.weight"], fashion_sd["conv1.weight"], rtol=0, atol=0)
    assert not torch.equal(mnist_sd["fc2.weight"], fashion_sd["fc2.weight"])


def test_export_converts_an_assignment_state_dict(shared_datasets, tmp_path):
    torch.manual_seed(0)
    torch.save(AssignmentNet().state_dict(), tmp_path / "mnist_cnn.pt")
    out = tmp_path / "models"
    result = runner.invoke(app, ["export", "mnist", "--weights", str(tmp_path / "mnist_cnn.pt"),
                                 "--models-dir", str(out), "--data-dir", str(shared_datasets / "mnist")])
    assert result.exit_code == 0, result.output
    validate_card(json.loads((out / "mnist.json").read_text()), out)


def test_export_rejects_foreign_weights(tmp_path):
    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    result = runner.invoke(app, ["export", "mnist", "--weights", str(tmp_path / "bad.pt"),
                                 "--models-dir", str(tmp_path)])
    assert result.exit_code == 1 and "cannot load" in result.output
    assert not (tmp_path / "mnist.onnx").exists()


# --- shipped models -----------------------------------------------------------------------------

def validate_card(card: dict, directory) -> None:
    import jsonschema

    from visionctl.constants import REPO_ROOT

    schema = json.loads((REPO_ROOT / "docs" / "model-card.schema.json").read_text())
    jsonschema.validate(card, schema)
    spec = vdata.DATASETS[card["name"]]
    assert card["labels"] == list(spec.labels) and card["input"]["preprocessing"] == spec.preprocessing
    assert card["data"]["sha256"].items() <= spec.sha256.items()
    for artifact in card["artifacts"].values():
        assert modelcard.sha256_file(directory / artifact["file"]) == artifact["sha256"]
    assert modelcard.read(directory / f"{card['name']}.json").raw == card  # the backend reads what export wrote


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_shipped_model_accuracy_on_full_test_set(name, models_dir, shared_datasets):
    """The committed ONNX artifacts meet the regression bars (``benchmarks/ood.py``'s, one definition) on
    all 10,000 test images, as their cards claim."""
    import onnxruntime as ort

    card = json.loads((models_dir / f"{name}.json").read_text())
    validate_card(card, models_dir)
    test = vdata.load_split(name, "test", shared_datasets / name)
    x = ((test.images.astype(np.float32) / 255.0 - card["normalization"]["mean"])
         / card["normalization"]["std"])[:, None]
    sess = ort.InferenceSession(str(models_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    pred = np.concatenate([sess.run(None, {card["input"]["name"]: x[i:i + 1000]})[0].argmax(1)
                           for i in range(0, len(x), 1000)])
    accuracy = float((pred == test.labels).mean())
    assert accuracy >= load_benchmark("ood").BARS[name]["test_accuracy"]
    assert abs(accuracy - card["metrics"]["test_accuracy"]) < 2e-4


def test_evaluate_cli_writes_pngs(models_dir, shared_datasets, tmp_path):
    result = runner.invoke(app, ["evaluate", "mnist", "--models-dir", str(models_dir), "--data-dir",
                                 str(shared_datasets / "mnist"), "--out-dir", str(tmp_path), "--limit", "300"])
    assert result.exit_code == 0, result.output
    accuracy = float(re.search(r"accuracy ([\d.]+)% on 300 test images", result.output).group(1))
    assert accuracy > 97
    for name in ("mnist-confusion.png", "mnist-mistakes.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
