"""The one Waitress release whose internals ``backend.protection.guard`` and ``backend.runtime.server``
subclass and patch.

They reach below Waitress's public API (the parser, channel, task classes and the server's
``maintenance``/``add_task``), which changes between releases without notice. So the version is
pinned exactly in pyproject.toml and the image's lock file, and the server refuses to start on any
other — loudly, at import, rather than mis-handling requests later.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

WAITRESS_VERSION = "3.0.2"


def require() -> None:
    """Exit with one clear line unless the installed Waitress is :data:`WAITRESS_VERSION`."""
    try:
        installed = version("waitress")
    except PackageNotFoundError:
        installed = "none"
    if installed != WAITRESS_VERSION:
        raise SystemExit(f"backend: waitress {installed} is installed, but backend.protection.guard and "
                         f"backend.runtime.server patch the internals of waitress {WAITRESS_VERSION}; "
                         f"install waitress=={WAITRESS_VERSION} "
                         "(pinned in pyproject.toml and requirements/backend.txt)")
