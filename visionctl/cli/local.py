"""Commands that run on this machine, no cluster: serve (the backend), ui (Streamlit), predict
(the API client)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backend.config import Config
from vision_client import DEFAULT_API_URL, DEFAULT_TIMEOUT
from visionctl.cli import render
from visionctl.cli.options import ApiKey, Dataset
from visionctl.constants import FRONTEND_PORT

app = typer.Typer()


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True, help="Image files.")],
    model: Annotated[Dataset, typer.Option("--model", "-m", help="Which model.")] = Dataset.mnist,
    url: Annotated[str | None, typer.Option(
        "--url", envvar="VISION_API_URL",
        help="API base URL: local serve, http://localhost:8080 (cluster) or the tunnel URL.",
        show_default=DEFAULT_API_URL)] = None,
    api_key: ApiKey = None,
    timeout: Annotated[float | None, typer.Option(
        min=0.1, envvar="VISION_API_TIMEOUT", help="Seconds per request.", show_default=str(DEFAULT_TIMEOUT))] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON answers (one array).")] = False,
    strict: Annotated[bool | None, typer.Option(
        "--strict/--no-strict", help="Ask for no label when an image does not look like the model's kind.",
        show_default="the server's VISION_OOD_STRICT")] = None,
) -> None:
    """Classify images through the API: label, confidence, verdict and top-3 per image.

    The verdict says whether an image looks like what the model knows (in distribution)."""
    import json

    from vision_client import ApiError, ApiUnavailable, VisionClient

    try:
        client = VisionClient(url, api_key=api_key, timeout=timeout)
    except ValueError as exc:
        render.fail(str(exc), 2)
    results, failed = [], 0
    with client:
        for path in images:
            try:
                results.append({"file": str(path), **client.predict(path.read_bytes(), model=model.value,
                                                                      strict=strict)})
            except ApiUnavailable as exc:
                render.fail(f"{exc}\n  start one with `visionctl serve` (or `visionctl up`), or pass --url")
            except ApiError as exc:
                failed += 1
                results.append({"file": str(path), "error": {"status": exc.status, "code": exc.code,
                                                             "message": exc.message}})
        if as_json:
            render.console.print_json(json.dumps(results))
        else:
            labels: list[str] = []

            def labels_for(n: int) -> list[str]:
                if not labels:
                    try:
                        labels.extend(client.model(model.value)["labels"])
                    except Exception:  # top-3 then shows class indices; the prediction itself is fine
                        labels.extend(str(i) for i in range(n))
                return labels

            render.predictions(f"{model.value} @ {client.base_url}", results, labels_for)
    if failed:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(
        help="Bind address; 0.0.0.0 shares it on your network.", show_default="VISION_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, show_default=f"VISION_PORT or {Config.port}")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Port of /metrics, on the same host; 0 = any free port.",
        show_default=f"VISION_METRICS_PORT or {Config.metrics_port}")] = None,
    models_dir: Annotated[Path | None, typer.Option(
        "--models-dir", help="Model folder.", show_default=f"VISION_MODEL_DIR or {Config.model_dir}")] = None,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated models to load.", show_default=f"VISION_MODELS or {','.join(Config.models)}")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Waitress threads.",
                                                  show_default=f"VISION_THREADS or {Config.threads}")] = None,
    workers: Annotated[str | None, typer.Option(
        help="Server processes, ~1 core each: a number, or auto = one per usable CPU (affinity, cgroup quota).",
        show_default="VISION_WORKERS or auto")] = None,
    log_level: Annotated[str | None, typer.Option(
        help="DEBUG, INFO, WARNING, ERROR.", show_default=f"VISION_LOG_LEVEL or {Config.log_level}")] = None,
) -> None:
    """Run the API locally on Waitress (no Docker, no cluster). Ctrl-C or SIGTERM stops it gracefully.

    Flags override the VISION_* environment variables; the backend validates them (see docs)."""
    import os

    flags = {"VISION_HOST": host, "VISION_PORT": port, "VISION_METRICS_PORT": metrics_port,
             "VISION_MODEL_DIR": models_dir, "VISION_MODELS": models,
             "VISION_THREADS": threads, "VISION_WORKERS": workers, "VISION_LOG_LEVEL": log_level}
    os.environ.update({k: str(v) for k, v in flags.items() if v is not None})
    # A developer's server stays on this machine unless asked; the image sets VISION_HOST=0.0.0.0.
    os.environ.setdefault("VISION_HOST", "127.0.0.1")
    try:
        from backend.config import ConfigError
        from backend.errors import ModelLoadError, WorkerError
        from backend.runtime.server import serve as run_backend
    except ImportError as exc:
        render.fail(f"the backend needs the [serve] extra: pip install -e '.[serve]' ({exc})")
    try:
        run_backend()
    except ConfigError as exc:
        render.fail(f"configuration error: {exc}", 2)
    except ModelLoadError as exc:
        render.fail(f"{exc}\n  train with `visionctl train mnist` or point --models-dir at a folder with "
                    "<name>.onnx + .json")
    except OSError as exc:
        render.fail(f"cannot listen: {exc} (is another server on that port? use --port / --metrics-port)")
    except WorkerError as exc:
        render.fail(str(exc))


@app.command()
def ui(
    api_url: Annotated[str | None, typer.Option(
        "--api-url", envvar="VISION_API_URL", help="Backend base URL.", show_default=DEFAULT_API_URL)] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Streamlit port.")] = FRONTEND_PORT,
    host: Annotated[str, typer.Option(help="Bind address (0.0.0.0 to share on your network).")] = "127.0.0.1",
    api_key: ApiKey = None,
) -> None:
    """Run the Streamlit UI locally, talking to a backend (`visionctl serve` or the cluster)."""
    import importlib.util
    import sys

    from backend.contract import BACKEND_PORT
    from visionctl.constants import REPO_ROOT
    from visionctl.ops.runner import Runner

    if importlib.util.find_spec("streamlit") is None:
        render.fail("the UI needs the [ui] extra: pip install -e '.[ui]'")
    env = {"VISION_API_URL": api_url or f"http://127.0.0.1:{BACKEND_PORT}"}
    if api_key:
        env["VISION_API_KEY"] = api_key
    argv = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "frontend" / "app.py"),
            "--server.port", str(port), "--server.address", host, "--server.headless", "true",
            "--browser.gatherUsageStats", "false"]
    render.console.print(f"UI on [bold]http://{host}:{port}[/] → API {env['VISION_API_URL']}  (Ctrl-C stops)")
    runner = Runner(render.console)
    code = render.steps(lambda: runner.passthrough(argv, title="streamlit", env=env, cwd=REPO_ROOT), verbose=False)
    raise typer.Exit(code)
