"""Option types shared by several commands, in Typer's ``Annotated`` style: one definition each,
defaults taken from :mod:`visionctl.constants`, never respelled."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from visionctl.constants import CLUSTER_NAME, DEFAULT_HOST_PORT
from visionctl.ml.train_config import ARCHITECTURES, STRATEGIES


class Dataset(StrEnum):
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"


Strategy = StrEnum("Strategy", {name: name for name in STRATEGIES})  # the CLI's choices are the library's
Arch = StrEnum("Arch", {name: name for name in ARCHITECTURES})


class Component(StrEnum):
    backend = "backend"
    frontend = "frontend"
    cloudflared = "cloudflared"


class TunnelMode(StrEnum):
    quick = "quick"
    token = "token"


class Only(StrEnum):
    backend = "backend"
    frontend = "frontend"


DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="VISION_DATA_DIR",
    help="Folder with the IDX files (offline); default: download with torchvision.")]
ModelsDir = Annotated[Path, typer.Option("--models-dir", envvar="VISION_MODEL_DIR", help="Where models live.")]
Cluster = Annotated[str, typer.Option("--cluster", "-c", envvar="VISION_CLUSTER", help="k3d cluster name.")]
Port = Annotated[int, typer.Option("--port", "-p", min=1, max=65535, envvar="VISION_HOST_PORT",
                                   help="localhost port mapped to the cluster's load balancer (the ingress).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the exact command plan; run nothing.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Echo every external command and stream its output.")]
Tag = Annotated[str | None, typer.Option("--tag", help="Image tag.", show_default="the visionctl version")]
BaseImage = Annotated[str | None, typer.Option(
    "--base-image", envvar="VISION_BASE_IMAGE",
    help="Base image for both Dockerfiles (build arg BASE_IMAGE).",
    show_default="the Dockerfiles' BASE_IMAGE, python:3.11-slim")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="VISION_API_KEY", help="API key sent as X-API-Key.")]
Values = Annotated[list[Path] | None, typer.Option(
    "--values", "-f", exists=True, dir_okay=False,
    help="Extra Helm values file (repeatable), e.g. API keys or resources.")]
RolloutTimeout = Annotated[int, typer.Option(min=10, help="Seconds to wait for each rollout.")]
TunnelModeOpt = Annotated[TunnelMode, typer.Option(
    help="quick: random *.trycloudflare.com URL, no account; token: named tunnel (token Secret via --values).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

DEFAULT_CLUSTER = CLUSTER_NAME
DEFAULT_PORT = DEFAULT_HOST_PORT
DEFAULT_MODELS_DIR = Path("models")
