"""Build the two images (``docker build``) — the library behind ``visionctl build`` and ``up``.

Images get explicit version tags (never ``latest``) because they are imported into k3d, not
pulled: the chart refers to exactly ``<name>:<tag>``. The build context is the repository root so
the backend image can bake in ``models/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from visionctl.constants import (
    BACKEND_IMAGE,
    DOCKERFILE_BACKEND,
    DOCKERFILE_FRONTEND,
    FRONTEND_IMAGE,
    IMAGE_TAG,
    REPO_ROOT,
)
from visionctl.ops.runner import Runner, StepFailed

BASE_IMAGE_ENV = "VISION_BASE_IMAGE"


@dataclass(frozen=True)
class Image:
    component: str
    repository: str
    dockerfile: str
    tag: str = IMAGE_TAG

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def project_images(tag: str = IMAGE_TAG) -> tuple[Image, Image]:
    return (Image("backend", BACKEND_IMAGE, DOCKERFILE_BACKEND, tag),
            Image("frontend", FRONTEND_IMAGE, DOCKERFILE_FRONTEND, tag))


def build_argv(image: Image, base_image: str | None = None) -> list[str]:
    argv = ["docker", "build", "-f", image.dockerfile, "-t", image.ref]
    if base_image:
        argv += ["--build-arg", f"BASE_IMAGE={base_image}"]
    return argv + ["."]


def build_images(runner: Runner, *, tag: str = IMAGE_TAG, base_image: str | None = None,
                 root: Path = REPO_ROOT, only: tuple[str, ...] = ("backend", "frontend")) -> list[Image]:
    """``docker build`` each image from ``root``; returns the images built (in plan order).

    ``base_image`` (else ``$VISION_BASE_IMAGE``) replaces the Dockerfiles' ``python:3.11-slim``,
    e.g. a mirror or an offline-built base."""
    base_image = base_image or os.environ.get(BASE_IMAGE_ENV) or None
    images = [img for img in project_images(tag) if img.component in only]
    for img in images:
        if not runner.dry_run and not (root / img.dockerfile).is_file():
            raise StepFailed(f"build {img.component} image", f"{root / img.dockerfile} not found",
                             hint="run visionctl from a checkout of the project (the Dockerfiles live there)")
        runner.run(build_argv(img, base_image), title=f"build {img.ref}", cwd=root, timeout=3600,
                   hint="read the build output above; `docker system df` / `docker builder prune` if the disk "
                        f"is full; set --base-image/{BASE_IMAGE_ENV} if python:3.11-slim cannot be pulled")
    return images


def image_id(runner: Runner, ref: str) -> str | None:
    """The local image ID of ``ref`` (None if absent) — changes whenever the content changes, so
    ``deploy`` can restart pods only when an image really changed."""
    result = runner.query(["docker", "image", "inspect", "--format", "{{.Id}}", ref])
    return (result.stdout.strip() or None) if result.ok else None
