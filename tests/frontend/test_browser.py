"""End to end in a real browser: Debian's Chromium (driven by Python Playwright) → ``streamlit run
frontend/app.py`` → the real backend → the real ONNX models, all on loopback ports.

Needs ``apt-get install chromium``; with ``VISION_REQUIRE_BROWSER=1`` (scripts/test.sh) a missing
browser fails the tests instead of skipping them.

Screenshots go to a temporary folder; ``VISION_UPDATE_SCREENSHOTS=1`` writes them to
docs/screenshots/ instead (the README's pictures), so a normal run leaves the checkout clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from repo import ROOT, SAMPLES

from devkit.backend_server import BackendServer, free_port, test_model_dir

APP = ROOT / "frontend" / "app.py"
FAVICON = ROOT / "frontend" / "static" / "favicon.png"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("VISION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.browser


def _missing(reason: str):
    if os.environ.get("VISION_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (VISION_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


class StreamlitServer:
    """``streamlit run frontend/app.py`` on 127.0.0.1:<free port>, configured only by env vars.

    It runs from a scratch working directory so the test also proves the page finds its own
    ``frontend/.streamlit/config.toml`` (offline, no usage stats) wherever it is started.
    """

    def __init__(self, api_url: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = api_url
        self.proc: subprocess.Popen | None = None
        self.workdir = tempfile.TemporaryDirectory(prefix="streamlit-")
        self.log_path = Path(self.workdir.name) / "streamlit.log"

    def __enter__(self) -> StreamlitServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VISION_", "STREAMLIT_"))}
        env.update(VISION_API_URL=self.api_url, HOME=self.workdir.name, PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
                 "--server.port", str(self.port)],
                cwd=self.workdir.name, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise TimeoutError(f"streamlit not healthy within 60 s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.workdir.cleanup()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        _missing(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Python playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    if os.environ.get("VISION_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def servers():
    with BackendServer(model_dir=test_model_dir()) as backend, StreamlitServer(backend.url) as ui:
        yield backend, ui


@pytest.fixture
def requested() -> list[str]:
    """Every URL the test's page requested (the page must never leave loopback)."""
    return []


@pytest.fixture
def page(browser, servers, requested):
    context = browser.new_context(viewport={"width": 1280, "height": 960}, device_scale_factor=1)
    context.on("request", lambda req: requested.append(req.url))
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def open_app(page, ui: StreamlitServer) -> None:
    page.goto(ui.url)
    page.get_by_role("heading", name="Vision AI").wait_for()
    page.get_by_text("Model", exact=True).first.wait_for()


def metric(page, label: str):
    """The value locator of the ``st.metric`` whose label is ``label``."""
    label_element = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    return (page.get_by_test_id("stMetric").filter(has=label_element)
            .get_by_test_id("stMetricValue"))


def expect_prediction(page, label: str) -> None:
    from playwright.sync_api import expect

    expect(metric(page, "Prediction")).to_have_text(label, timeout=TIMEOUT_MS)


def photo_like(sample: Path, out: Path) -> Path:
    """A sample as a user would send it: dark ink on white paper, off-centre, larger, JPEG."""
    from PIL import Image, ImageOps

    digit = ImageOps.invert(Image.open(sample).convert("L")).resize((112, 112), Image.Resampling.BICUBIC)
    paper = Image.new("L", (320, 240), 255)
    paper.paste(digit, (40, 90))
    paper.convert("RGB").save(out, "JPEG", quality=90)
    return out


def test_upload_an_image_and_read_the_prediction(page, servers, screenshots, requested, tmp_path):
    _, ui = servers
    open_app(page, ui)
    assert page.title() == "Vision AI"
    icon = page.locator("link[rel~='icon']").first.get_attribute("href")
    favicon = page.request.get(urljoin(ui.url + "/", icon))
    assert favicon.ok and favicon.body() == FAVICON.read_bytes()  # ours, not Streamlit's default

    page.get_by_role("radio", name="Upload").click()
    upload = photo_like(SAMPLES / "mnist" / "7-7.png", tmp_path / "seven.jpg")
    page.locator("input[type=file]").set_input_files(str(upload))
    expect_prediction(page, "7")
    page.get_by_text("What the model sees (28×28)").wait_for()
    assert metric(page, "Latency").inner_text().endswith(" ms")

    page.wait_for_timeout(500)  # let the chart's entry animation finish before the screenshot
    shot = screenshots / "frontend.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000  # a real rendering, not a blank page

    # Offline by construction: every request the page made went to the loopback UI server.
    hosts = {urlsplit(u).hostname for u in requested if urlsplit(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {"127.0.0.1"}, hosts


def test_noise_is_called_out_as_not_a_digit(page, servers, screenshots, tmp_path):
    from ood_images import flagged
    from playwright.sync_api import expect

    _, ui = servers
    open_app(page, ui)
    page.get_by_role("radio", name="Upload").click()
    unusual = tmp_path / "unusual.png"
    unusual.write_bytes(flagged("mnist")[0])  # uniform noise, unless the model keeps it
    page.locator("input[type=file]").set_input_files(str(unusual))
    page.get_by_text("This does not look like a handwritten digit.").wait_for()
    page.get_by_text("What the model sees (28×28)").wait_for()
    page.wait_for_timeout(500)
    shot = screenshots / "frontend-ood.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.get_by_text("Strict: no answer for unusual images").click()
    expect(metric(page, "Prediction")).to_have_text("—", timeout=TIMEOUT_MS)
    page.get_by_text("so the model gives no answer (strict mode)").wait_for()


def test_pick_a_fashion_sample(page, servers):
    backend, ui = servers
    from vision_client import VisionClient

    open_app(page, ui)
    page.get_by_role("radio", name="Clothing (Fashion-MNIST)").click()
    page.get_by_role("radio", name="Trouser").click()
    expected = VisionClient(backend.url).predict((SAMPLES / "fashion-mnist" / "1-trouser.png").read_bytes(),
                                                 model="fashion-mnist")
    expect_prediction(page, expected["label"])


def test_draw_a_digit_on_the_canvas(page, servers, screenshots):
    _, ui = servers
    open_app(page, ui)
    page.get_by_role("radio", name="Draw").click()
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    # A tall vertical stroke in the middle of the canvas: a "1".
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x + step * 0.3, box["y"] + box["height"] * (0.15 + 0.035 * step))
    page.mouse.up()
    expect_prediction(page, "1")
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshots / "frontend-draw.png"))


# Rightmost edge of anything drawn in the main area, shadow DOM included (the canvas component
# renders in one): Streamlit scrolls inside its own container, so the document's scrollWidth
# alone would not notice a widget sticking out.
RIGHTMOST_EDGE_JS = """() => {
  let right = 0;
  const visit = root => {
    for (const el of root.querySelectorAll('*')) {
      const box = el.getBoundingClientRect();
      if (box.width > 0) right = Math.max(right, box.right);
      if (el.shadowRoot) visit(el.shadowRoot);
    }
  };
  visit(document.querySelector('[data-testid=stMain]'));
  return right;
}"""


def test_narrow_screen_has_nothing_wider_than_the_phone(browser, servers, tmp_path):
    _, ui = servers
    width = 360
    context = browser.new_context(viewport={"width": width, "height": 780}, device_scale_factor=1, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        open_app(page, ui)
        expect_prediction(page, "0")  # the first sample is preselected
        page.screenshot(path=str(tmp_path / "samples.png"))  # to look at when it fails
        assert page.evaluate(RIGHTMOST_EDGE_JS) <= width
        page.get_by_role("radio", name="Draw").click()
        page.locator("canvas.upper-canvas").wait_for()
        page.screenshot(path=str(tmp_path / "draw.png"))
        assert page.evaluate(RIGHTMOST_EDGE_JS) <= width
    finally:
        context.close()


def test_explanation_overlay(page, servers, screenshots):
    _, ui = servers
    open_app(page, ui)
    page.get_by_role("radio", name="3").click()
    expect_prediction(page, "3")
    page.get_by_text("Show what the model looked at").click()
    page.get_by_text("What the model looked at (red = most important)").wait_for()
    page.get_by_test_id("stImage").last.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    shot = screenshots / "frontend-explain.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_api_docs_page_renders_offline(browser, servers):
    backend, _ = servers
    context = browser.new_context()
    requested: list[str] = []
    context.on("request", lambda req: requested.append(req.url))
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(backend.url + "/docs")
    # Swagger UI fetched and rendered the document (paths carry data-path; their text has <wbr>s).
    for path in ("/v2/models/{name}/infer", "/v1/models/{name}/explain", "/predict"):
        page.locator(f'[data-path="{path}"]').first.wait_for()
    assert not errors, errors
    assert {urlsplit(u).hostname for u in requested} == {"127.0.0.1"}
    context.close()
