"""Vision AI — the Streamlit page: pick a model, give it an image, see what it sees and predicts.

Run with ``visionctl ui`` or ``streamlit run frontend/app.py``. The page only talks to the API
through :class:`vision_client.VisionClient`; it never loads a model, so the same page works
against a local ``visionctl serve``, the cluster or a tunnel URL (``VISION_API_URL``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import time
from pathlib import Path
from typing import NamedTuple

import altair as alt
import pandas as pd
import streamlit as st
from PIL import Image

from backend.contract import DIGIT, __version__, subject
from frontend.config import Settings, load_settings
from vision_client import ApiError, ApiUnavailable, ClientError, VisionClient

HERE = Path(__file__).resolve().parent
FAVICON = HERE / "static" / "favicon.png"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp"]
# The backend caps request bodies at 10 MiB (VISION_MAX_BODY_BYTES) and base64 adds a third.
MAX_UPLOAD_MB = 7
MODEL_TITLES = {"mnist": "Digits (MNIST)", "fashion-mnist": "Clothing (Fashion-MNIST)"}
SOURCES = {"sample": "Samples", "upload": "Upload", "draw": "Draw"}
CANVAS_SIDE = 280  # 10× the model's 28 px: big enough to draw on, small enough for a phone
PREVIEW_SIDE = 168  # 6× the model's 28 px
UNSURE_BELOW = 0.6  # confidence under which the page says the model is guessing


class Prediction(NamedTuple):
    key: tuple[str, str, bool]  # (model, sha256 of the image, strict) — reused across reruns, not re-sent
    result: dict
    latency_ms: float


# -- API access ------------------------------------------------------------------------------


def _clients(settings: Settings) -> tuple[VisionClient, VisionClient]:
    """This browser session's keep-alive clients (connection reuse keeps reruns snappy): the API
    client with the full timeout and a short-timeout one for the sidebar's probes. Per session
    rather than per process because a ``requests.Session`` is not documented as thread-safe and
    Streamlit runs every session's script in its own thread."""
    cached = st.session_state.get("clients")
    if cached is None or cached[0] != settings:
        cached = (settings, settings.client(), settings.probe_client())
        st.session_state["clients"] = cached
    return cached[1], cached[2]


@st.cache_data(ttl=30, show_spinner=False)
def _load_models(_settings: Settings, api_url: str, api_key: str | None) -> list[dict]:
    """``GET /v1/models``, cached briefly per (URL, key) — the list is the same for every user;
    failures raise and are therefore never cached."""
    return _clients(_settings)[0].models()


def _backend_state(settings: Settings) -> str:
    probe = _clients(settings)[1]
    if probe.ready():
        return "ready"
    return "starting" if probe.health() else "down"


def _friendly_error(exc: ClientError, settings: Settings, elapsed: float | None = None) -> str:
    """One sentence a user can act on, for every failure the client can raise."""
    url = settings.api_url
    if isinstance(exc, ApiUnavailable):
        if elapsed is not None and elapsed >= settings.timeout * 0.95:
            return (f"The backend at {url} did not answer within {settings.timeout:g} s. It may be "
                    "overloaded or still starting — try again in a moment (or raise VISION_API_TIMEOUT).")
        return (f"Can't reach the backend at {url} ({exc.reason}). Start it with `visionctl serve`, "
                "or point VISION_API_URL at a running one.")
    assert isinstance(exc, ApiError)
    if exc.status in (401, 403):
        return (f"The backend refused the request ({exc.message or exc.code}). Enter your API key in the "
                "sidebar (or set VISION_API_KEY).")
    if exc.status == 404:
        return f"The backend does not serve this model ({exc.message or exc.code})."
    if exc.status == 413:
        return f"That image is too large for the backend: {exc.message}"
    if exc.status == 429:
        return "The backend is busy right now — try again in a moment."
    if exc.status == 503:
        return "The backend is starting or shutting down (models not ready) — try again in a moment."
    if 400 <= exc.status < 500:
        return f"The backend could not use this image: {exc.message or exc.code}"
    return (f"The backend failed ({exc.status} {exc.code}): {exc.message}. Try again; if it keeps "
            "happening, check the backend's logs.")


def _predict(settings: Settings, model: str, image: bytes, strict: bool) -> Prediction | str:
    """Classify ``image``; the same (model, image, strict) is answered from session state."""
    key = (model, hashlib.sha256(image).hexdigest(), strict)
    # Stored as a plain tuple: Streamlit re-executes this script on every rerun, so a class
    # defined here is a new class each time and isinstance() on stored objects would fail.
    cached = st.session_state.get("prediction")
    if cached is not None and cached[0] == key:
        return Prediction(*cached)
    start = time.perf_counter()
    try:
        with st.spinner("Classifying…"):
            result = _clients(settings)[0].predict(image, model=model, return_input=True, strict=strict)
    except ClientError as exc:
        st.session_state.pop("prediction", None)
        return _friendly_error(exc, settings, time.perf_counter() - start)
    prediction = Prediction(key, result, (time.perf_counter() - start) * 1000)
    st.session_state["prediction"] = tuple(prediction)
    return prediction


# -- inputs ----------------------------------------------------------------------------------


def _samples(settings: Settings, model: str) -> list[Path]:
    """Bundled test-set images named ``<class index>-<slug>.png``, in class order."""
    folder = settings.samples_dir / model
    files = [p for p in folder.glob("*.png") if p.stem.split("-", 1)[0].isdigit()] if folder.is_dir() else []
    return sorted(files, key=lambda p: (int(p.stem.split("-", 1)[0]), p.name))


def _sample_input(settings: Settings, model: str, labels: list[str]) -> bytes | None:
    files = _samples(settings, model)
    if not files:
        st.info(f"No sample images found in {settings.samples_dir / model}.")
        return None

    def title(path: Path) -> str:
        index = int(path.stem.split("-", 1)[0])
        return labels[index] if 0 <= index < len(labels) else path.stem

    st.image([str(p) for p in files], caption=[title(p) for p in files], width=56,
             alt=[f"Sample: {title(p)}" for p in files])
    choice = st.pills("Sample", files, format_func=title, default=files[0], key=f"sample-{model}",
                      help="One image per class from the model's test set.", wrap=True)
    return choice.read_bytes() if choice else None


def _upload_input() -> bytes | None:
    uploaded = st.file_uploader("Image file", type=UPLOAD_TYPES, max_upload_size=MAX_UPLOAD_MB,
                                help="PNG, JPEG or WebP. Any size or colour: the backend crops, "
                                     "centres and scales it the way the model was trained.")
    return uploaded.getvalue() if uploaded else None


def _draw_input() -> bytes | None:
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception as exc:  # noqa: BLE001 — the rest of the page must keep working
        st.warning(f"Drawing is unavailable here ({type(exc).__name__}). Upload an image instead.")
        return None
    st.caption("Draw one large digit (or a piece of clothing) filling the canvas. "
               "The toolbar above the canvas undoes or clears.")
    stroke = st.slider("Brush", 8, 32, 18, help="Stroke width in pixels on the 280 px canvas.")
    st.space("small")  # the canvas toolbar floats above the canvas; keep it off the slider
    canvas = st_canvas(stroke_width=stroke, stroke_color="#FFFFFF", background_color="#000000",
                       height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw",
                       return_image_data=True, key="canvas")
    if not (canvas.json_data and canvas.json_data.get("objects")):
        return None  # an empty canvas is not a question worth asking the model
    return canvas.image_bytes


# -- output ----------------------------------------------------------------------------------


def _probability_chart(labels: list[str], probabilities: list[float], predicted: int) -> alt.Chart:
    data = pd.DataFrame({
        "class": labels,
        "probability": probabilities,
        "predicted": [i == predicted for i in range(len(labels))],
    })
    return alt.Chart(data, height=26 * len(labels)).mark_bar(cornerRadiusEnd=3).encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title=None)),
        y=alt.Y("class:N", sort=labels, title=None),  # class order, not alphabetical
        color=alt.condition("datum.predicted", alt.value("#ff4b4b"), alt.value("#8da2b5")),
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("probability:Q", format=".2%")],
    )


def _pixelated(data: bytes, side: int = PREVIEW_SIDE) -> Image.Image | bytes:
    """Small images enlarged by a whole factor with hard pixel edges (a browser would blur them,
    hiding exactly the pixels the model works with); larger ones are passed through."""
    try:
        img = Image.open(io.BytesIO(data))
    except (OSError, Image.DecompressionBombError):
        return data  # the backend decoded it, so the browser may still show it as it is
    scale = side // max(img.size)
    if scale < 2:
        return data
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


def _show_verdict(res: dict, labels: list[str]) -> None:
    """Say it when the image is not what the model knows: its label is then a guess (or withheld,
    in strict mode), however high the confidence."""
    what = subject(res["model"])
    top = labels[max(range(len(labels)), key=lambda i: res["probabilities"][i])]
    if res.get("in_distribution", True):
        if float(res["confidence"]) < UNSURE_BELOW:
            runner_up = sorted(range(len(labels)), key=lambda i: res["probabilities"][i])[-2]
            st.warning(f"The model is unsure: {res['label']} or perhaps {labels[runner_up]}.")
        return
    if res["label"] is None:
        st.error(f"**This does not look like {what}**, so the model gives no answer (strict mode). "
                 f"It would have guessed {top}.", icon=":material/block:")
    else:
        st.warning(f"**This does not look like {what}.** The model answers {res['label']} because it "
                   f"must pick one of its classes — treat it as a guess.", icon=":material/help:")


def _show_result(prediction: Prediction, labels: list[str], image: bytes, settings: Settings) -> None:
    res = prediction.result
    confidence = float(res["confidence"])
    label_col, conf_col, time_col = st.columns(3)
    label_col.metric("Prediction", "—" if res["label"] is None else res["label"])
    conf_col.metric("Confidence", f"{confidence:.1%}")
    time_col.metric("Latency", f"{prediction.latency_ms:.0f} ms",
                    help="Round trip from this page's server to the API and back.")
    _show_verdict(res, labels)
    predicted = max(range(len(labels)), key=lambda i: res["probabilities"][i])
    st.altair_chart(_probability_chart(labels, res["probabilities"], predicted),
                    width="stretch", alt="Probability of each class")
    original, seen = st.columns(2)
    original.image(_pixelated(image), caption="Your image", width=PREVIEW_SIDE, alt="The image you sent")
    if res.get("input_image"):
        seen.image(_pixelated(base64.b64decode(res["input_image"])), width=PREVIEW_SIDE,
                   caption="What the model sees (28×28)", alt="The 28×28 image after preprocessing")
    if st.toggle("Show what the model looked at", key="explain",
                 help="Occlusion sensitivity: red pixels are those whose blanking lowers the confidence most."):
        _show_explanation(settings, prediction, image)
    verdict = "in distribution" if res.get("in_distribution", True) else "out of distribution"
    score = f" · ood_score {res['ood_score']:.3g} ({verdict})" if "ood_score" in res else ""
    st.caption(f"Model {res['model']} · version {res['model_version']}{score}")


def _show_explanation(settings: Settings, prediction: Prediction, image: bytes) -> None:
    """Fetched only when asked for (it costs ~145 model runs) and kept for this (model, image)."""
    cached = st.session_state.get("explanation")
    if cached is None or cached[0] != prediction.key:
        try:
            with st.spinner("Explaining…"):
                result = _clients(settings)[0].explain(image, model=prediction.result["model"])
        except ClientError as exc:
            st.error(f"No explanation: {exc}", icon=":material/error:")
            return
        cached = (prediction.key, result["overlay"])
        st.session_state["explanation"] = cached
    st.image(base64.b64decode(cached[1]), width=PREVIEW_SIDE,
             caption="What the model looked at (red = most important)", alt="Occlusion attribution overlay")


# -- page ------------------------------------------------------------------------------------


def _sidebar(settings: Settings, state: str, model: dict | None) -> None:
    with st.sidebar:
        st.header("Backend")
        st.code(settings.api_url, language=None)
        if state == "ready":
            st.success("Ready", icon=":material/check_circle:")
        elif state == "starting":
            st.warning("Alive, models still loading", icon=":material/hourglass_top:")
        else:
            st.error("Unreachable", icon=":material/cloud_off:")
        st.caption(f"Timeout {settings.timeout:g} s · API key {'sent' if settings.api_key else 'not set'}")
        # A callback runs before the rerun, so the fresh model list is used on this very click.
        st.button("Check again", icon=":material/refresh:", on_click=_load_models.clear)
        if model:
            st.header("Model")
            accuracy = model.get("test_accuracy")
            st.markdown(f"**{model['name']}**  \n{model.get('description', '')}")
            st.markdown(f"Version `{model['version']}`"
                        + (f"  \nTest accuracy **{accuracy:.2%}**" if accuracy is not None else ""))
            preprocessing = (model.get("input") or {}).get("preprocessing")
            if preprocessing:
                st.caption(f"Preprocessing: {preprocessing} "
                           + ("(crop to ink, centre by mass)" if preprocessing == DIGIT
                              else "(whole frame)"))
            st.caption("Classes: " + ", ".join(model["labels"]))
        st.divider()
        st.caption(f"Vision AI {__version__}")


def main() -> None:
    st.set_page_config(page_title="Vision AI", page_icon=str(FAVICON) if FAVICON.is_file() else None,
                       layout="wide", menu_items={"About": "Vision AI: MNIST / Fashion-MNIST as a service."})
    st.title("Vision AI")
    st.caption("Draw, upload or pick an image and see how the model reads it.")

    try:
        settings = load_settings()
    except ValueError as exc:
        st.error(f"Configuration error: {exc}")
        st.stop()
    if settings.api_key is None:
        # No key of its own: a visitor may bring theirs (a backend with keys on then serves only
        # visitors who have one — the public UI never predicts anonymously on someone's key).
        entered = st.sidebar.text_input("API key", type="password", key="api_key",
                                        help="Needed when the backend has API keys on (X-API-Key).")
        if entered.strip():
            settings = dataclasses.replace(settings, api_key=entered.strip())

    # The model list doubles as the connectivity check: when it fails there is no point in
    # probing (a silent host would cost another probe timeout before the page could say so).
    start = time.perf_counter()
    try:
        models = {m["name"]: m for m in _load_models(settings, settings.api_url, settings.api_key)}
    except ClientError as exc:
        state = "down" if isinstance(exc, ApiUnavailable) else _backend_state(settings)
        _sidebar(settings, state, None)
        st.error(_friendly_error(exc, settings, time.perf_counter() - start), icon=":material/cloud_off:")
        st.stop()
    state = _backend_state(settings)

    if not models:
        _sidebar(settings, state, None)
        st.warning("The backend serves no models.")
        st.stop()

    names = list(models)
    name = st.segmented_control("Model", names, default=names[0], required=True, key="model",
                                format_func=lambda n: MODEL_TITLES.get(n, n))
    model = models[name]
    labels = list(model["labels"])
    # Repeated from the sidebar, which phones keep collapsed.
    st.caption(" · ".join([f"Version {model['version']}"]
                          + ([f"test accuracy {model['test_accuracy']:.2%}"]
                             if model.get("test_accuracy") is not None else [])))
    _sidebar(settings, state, model)

    input_col, result_col = st.columns([5, 6], gap="large")
    with input_col:
        strict = st.toggle("Strict: no answer for unusual images", key="strict",
                           help=f"The API then abstains (label null) on an image that does not look like "
                                f"{subject(name)}, instead of guessing a class.")
        source = st.segmented_control("Input", list(SOURCES), default="sample", required=True,
                                      format_func=SOURCES.get, key="source")
        if source == "upload":
            image = _upload_input()
        elif source == "draw":
            image = _draw_input()
        else:
            image = _sample_input(settings, name, labels)

    with result_col:
        if image is None:
            st.info("Pick a sample, upload an image or draw something to see a prediction.",
                    icon=":material/touch_app:")
            return
        outcome = _predict(settings, name, image, strict)
        if isinstance(outcome, str):
            st.error(outcome, icon=":material/error:")
        else:
            _show_result(outcome, labels, image, settings)


main()
