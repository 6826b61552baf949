"""The Streamlit page (frontend/app.py) driven by ``streamlit.testing.v1.AppTest``.

AppTest runs the real script in-process; every prediction goes over real HTTP on loopback to a
real backend (``python -m backend`` on Waitress, see devkit/backend_server.py) serving the real
ONNX models from ``$VISION_TEST_MODEL_DIR`` or ``models/``. The failure tests use real sockets: a
port nobody listens on, and one that accepts connections but never answers.
"""

from __future__ import annotations

import io
import json
import secrets
import socket
from pathlib import Path

import pyarrow.ipc
import pytest
from PIL import Image, ImageOps
from prometheus_client.parser import text_string_to_metric_families
from repo import ROOT, SAMPLES
from streamlit.testing.v1 import AppTest

from devkit.backend_server import BackendServer, free_port, test_model_dir
from vision_client import VisionClient

APP = ROOT / "frontend" / "app.py"




def make_app(monkeypatch, url: str, **env: str) -> AppTest:
    """The page configured like a deployment: only through environment variables."""
    for var in ("VISION_API_URL", "VISION_API_KEY", "VISION_API_TIMEOUT", "VISION_SAMPLES_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VISION_API_URL", url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return AppTest.from_file(str(APP), default_timeout=30)


def shown(at: AppTest) -> dict[str, str]:
    """The result metrics on the page, e.g. {"Prediction": "3", "Confidence": "99.9%", ...}."""
    return {m.label: m.value for m in at.metric}


def no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def sample(model: str, index: int) -> Path:
    (path,) = SAMPLES.joinpath(model).glob(f"{index}-*.png")
    return path


def test_sample_prediction_for_each_model(server, monkeypatch):
    at = make_app(monkeypatch, server.url).run()
    no_traceback(at)
    assert at.sidebar.success[0].value == "Ready"
    assert server.url in at.sidebar.code[0].value

    # MNIST: the first sample is preselected so the page shows a result straight away.
    assert at.segmented_control(key="model").value == "mnist"
    card = VisionClient(server.url).model("mnist")
    caption = f"Version {card['version']} · test accuracy {card['test_accuracy']:.2%}"
    assert caption in [c.value for c in at.main.caption]
    assert shown(at)["Prediction"] == "0"
    at.pills(key="sample-mnist").set_value(sample("mnist", 3)).run()
    no_traceback(at)
    result = shown(at)
    assert result["Prediction"] == "3"
    assert result["Confidence"].endswith("%") and result["Latency"].endswith(" ms")
    # The 28×28 input as the model saw it is displayed next to the user's image.
    captions = [c for img in at.image for c in img.captions]
    assert "What the model sees (28×28)" in captions and "Your image" in captions

    # Fashion-MNIST: the picker switches model, samples, labels and the sidebar card.
    at.segmented_control(key="model").set_value("fashion-mnist").run()
    no_traceback(at)
    labels = VisionClient(server.url).model("fashion-mnist")["labels"]
    at.pills(key="sample-fashion-mnist").set_value(sample("fashion-mnist", 7)).run()
    no_traceback(at)
    expected = VisionClient(server.url).predict(sample("fashion-mnist", 7).read_bytes(), model="fashion-mnist")
    assert shown(at)["Prediction"] == expected["label"] in labels
    assert any("fashion-mnist" in md.value for md in at.sidebar.markdown)
    assert at.main.caption[-1].value.startswith("Model fashion-mnist · version ")


def test_probability_chart_shows_every_class_in_order(server, monkeypatch):
    at = make_app(monkeypatch, server.url).run()
    at.pills(key="sample-mnist").set_value(sample("mnist", 8)).run()
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    labels = VisionClient(server.url).model("mnist")["labels"]
    # Class order on the axis, not Vega's default alphabetical sort (matters for Fashion-MNIST).
    assert spec["encoding"]["y"]["sort"] == labels
    (dataset,) = chart.proto.datasets
    table = pyarrow.ipc.open_stream(dataset.data.data).read_pandas()
    expected = VisionClient(server.url).predict(sample("mnist", 8).read_bytes())
    assert list(table["class"]) == labels
    assert list(table["probability"]) == pytest.approx(expected["probabilities"], abs=1e-6)
    assert list(table["predicted"]) == [i == expected["class_index"] for i in range(10)]


def test_upload_dark_on_light_jpeg(server, monkeypatch):
    """A photo-like upload (dark ink on white, JPEG, larger than 28 px) is preprocessed server-side."""
    img = Image.open(sample("mnist", 4)).convert("L").resize((200, 200), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    ImageOps.invert(img).convert("RGB").save(buf, "JPEG", quality=90)

    at = make_app(monkeypatch, server.url).run()
    at.segmented_control(key="source").set_value("upload").run()
    assert at.info, "an empty uploader should explain what to do"
    at.file_uploader[0].set_value(("four.jpg", buf.getvalue(), "image/jpeg")).run()
    no_traceback(at)
    assert shown(at)["Prediction"] == "4"


def test_an_image_that_is_not_a_digit_is_called_out(server, monkeypatch):
    from ood_images import flagged, kept

    at = make_app(monkeypatch, server.url).run()
    index, _ = kept("mnist")[0]
    at.pills(key="sample-mnist").set_value(sample("mnist", index)).run()
    assert not [w for w in at.warning if "does not look like" in w.value]  # a digit the model keeps
    assert "(in distribution)" in at.main.caption[-1].value
    at.segmented_control(key="source").set_value("upload").run()
    unusual = flagged("mnist")[0]
    at.file_uploader[0].set_value(("noise.png", unusual, "image/png")).run()
    no_traceback(at)
    expected = VisionClient(server.url).predict(unusual)
    assert expected["in_distribution"] is False
    assert shown(at)["Prediction"] == expected["label"]  # a guess, and the page says so
    (warning,) = [w.value for w in at.warning if "does not look like" in w.value]
    assert warning.startswith("**This does not look like a handwritten digit.**") and "guess" in warning
    assert f"ood_score {expected['ood_score']:.3g} (out of distribution)" in at.main.caption[-1].value

    at.toggle(key="strict").set_value(True).run()  # strict: the API abstains, the page shows no label
    no_traceback(at)
    assert shown(at)["Prediction"] == "—"
    (error,) = [e.value for e in at.main.error]
    assert "This does not look like a handwritten digit" in error and "no answer" in error


def test_upload_that_is_not_an_image_gets_a_friendly_error(server, monkeypatch):
    at = make_app(monkeypatch, server.url).run()
    at.segmented_control(key="source").set_value("upload").run()
    at.file_uploader[0].set_value(("notes.png", b"definitely not a PNG", "image/png")).run()
    no_traceback(at)
    assert "Prediction" not in shown(at)
    (error,) = at.error
    assert error.value.startswith("The backend could not use this image:")


def test_backend_down_is_a_friendly_error(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    at = make_app(monkeypatch, url).run()
    no_traceback(at)
    assert at.sidebar.error[0].value == "Unreachable"
    main_errors = [e.value for e in at.main.error]
    assert len(main_errors) == 1 and main_errors[0].startswith(f"Can't reach the backend at {url}")
    assert "visionctl serve" in main_errors[0]


def test_backend_that_never_answers_times_out_with_a_message(monkeypatch):
    # A listening socket that is never accepted: TCP connects, the HTTP request gets no answer.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        at = make_app(monkeypatch, url, VISION_API_TIMEOUT="0.5").run()
    no_traceback(at)
    assert at.sidebar.error[0].value == "Unreachable"
    (error,) = at.main.error
    assert error.value.startswith(f"The backend at {url} did not answer within 0.5 s")


def test_invalid_configuration_is_reported_not_raised(monkeypatch):
    at = make_app(monkeypatch, "http://127.0.0.1:1", VISION_API_TIMEOUT="soon").run()
    no_traceback(at)
    (error,) = at.error
    assert error.value.startswith("Configuration error: VISION_API_TIMEOUT must be a number")


def test_api_key_is_sent_and_a_wrong_one_is_explained(monkeypatch):
    key = secrets.token_hex(16)
    with BackendServer(model_dir=test_model_dir(), env={"VISION_API_KEYS": key}) as server:
        at = make_app(monkeypatch, server.url, VISION_API_KEY="x" * 32).run()
        no_traceback(at)
        (error,) = at.main.error
        assert "Enter your API key" in error.value

        at = make_app(monkeypatch, server.url, VISION_API_KEY=key).run()
        no_traceback(at)
        assert shown(at)["Prediction"] == "0"
        assert "API key sent" in at.sidebar.caption[0].value
        assert not [t for t in at.sidebar.text_input if t.label == "API key"]  # configured: no prompt


def test_without_a_key_of_its_own_the_ui_asks_the_visitor_for_one(monkeypatch):
    """With keys on and no VISION_API_KEY (the chart's default), nobody predicts anonymously."""
    key = secrets.token_hex(16)
    with BackendServer(model_dir=test_model_dir(), env={"VISION_API_KEYS": key}) as server:
        at = make_app(monkeypatch, server.url).run()
        no_traceback(at)
        assert "Enter your API key" in at.main.error[0].value
        assert "Prediction" not in shown(at)
        at.sidebar.text_input(key="api_key").input(key).run()
        no_traceback(at)
        assert shown(at)["Prediction"] == "0"


def test_page_recovers_when_the_backend_comes_up(monkeypatch):
    port = free_port()
    at = make_app(monkeypatch, f"http://127.0.0.1:{port}").run()
    assert at.sidebar.error[0].value == "Unreachable"
    with BackendServer(model_dir=test_model_dir(), port=port):
        at.sidebar.button[0].click().run()  # "Check again"
        no_traceback(at)
        assert not at.error
        assert at.sidebar.success[0].value == "Ready"
        assert shown(at)["Prediction"] == "0"


def test_backend_going_away_mid_session_is_a_friendly_error(monkeypatch):
    with BackendServer(model_dir=test_model_dir()) as server:
        at = make_app(monkeypatch, server.url).run()
        assert shown(at)["Prediction"] == "0"
        server.stop()  # SIGTERM: graceful shutdown, then the port is closed
    # The model list is still cached, so the page stays usable and explains the failed request.
    at.pills(key="sample-mnist").set_value(sample("mnist", 5)).run()
    no_traceback(at)
    assert "Prediction" not in shown(at)
    assert at.sidebar.error[0].value == "Unreachable"
    (error,) = at.main.error
    assert error.value.startswith(f"Can't reach the backend at {server.url}")


def predictions_served(server: BackendServer) -> float:
    """How many images the backend has classified, from its Prometheus /metrics."""
    text = server.metrics()
    return sum(s.value for fam in text_string_to_metric_families(text) if fam.name == "vision_predictions"
               for s in fam.samples if s.name == "vision_predictions_total")


def test_reruns_do_not_resend_the_same_image(server, monkeypatch):
    before = predictions_served(server)
    at = make_app(monkeypatch, server.url).run()
    assert shown(at)["Prediction"] == "0"
    assert predictions_served(server) == before + 1
    at.sidebar.button[0].click().run()  # any rerun: widgets unchanged
    assert shown(at)["Prediction"] == "0"
    assert predictions_served(server) == before + 1
    at.pills(key="sample-mnist").set_value(sample("mnist", 2)).run()
    assert shown(at)["Prediction"] == "2"
    assert predictions_served(server) == before + 2


def test_draw_view_has_a_canvas_and_waits_for_a_drawing(server, monkeypatch):
    """The canvas component must be installed (it is in the [ui] extra), not degraded to a notice.
    Drawing itself needs a browser: tests/frontend/test_browser.py draws a digit with the mouse."""
    at = make_app(monkeypatch, server.url).run()
    at.segmented_control(key="source").set_value("draw").run()
    no_traceback(at)
    assert not at.warning, [w.value for w in at.warning]
    assert [el.key for el in at.get("bidi_component")] == ["canvas"]
    assert "Prediction" not in shown(at)  # an empty canvas is not sent
    assert at.main.info[0].value.startswith("Pick a sample, upload an image or draw")


def test_samples_folder_is_configurable(server, monkeypatch, tmp_path):
    at = make_app(monkeypatch, server.url, VISION_SAMPLES_DIR=str(tmp_path)).run()
    no_traceback(at)
    assert at.main.info[0].value == f"No sample images found in {tmp_path / 'mnist'}."
    assert "Prediction" not in shown(at)


def test_explanation_overlay_on_request(server, monkeypatch):
    at = make_app(monkeypatch, server.url).run()
    no_traceback(at)
    captions = lambda: [c for img in at.image for c in img.captions]  # noqa: E731
    assert "What the model looked at (red = most important)" not in captions()  # only when asked
    at.toggle(key="explain").set_value(True).run()
    no_traceback(at)
    assert "What the model looked at (red = most important)" in captions()
    at.pills(key="sample-mnist").set_value(sample("mnist", 4)).run()  # a new image gets its own overlay
    no_traceback(at)
    assert shown(at)["Prediction"] == "4"
    assert "What the model looked at (red = most important)" in captions()
