"""visionctl — the one command-line tool for the Vision AI service.

Commands are thin: they parse flags (Typer ``Annotated`` options, :mod:`.options`), call a
library in :mod:`visionctl.ml` or :mod:`visionctl.ops` and hand the result to :mod:`.render`.
Each domain is its own Typer app, merged here with ``add_typer``. Heavy imports (torch,
onnxruntime) happen inside commands so ``--help`` is fast.

Exit codes: 0 success, 1 a step or request failed (the message says which and what to do),
2 bad usage (unknown option, invalid value), 130 interrupted.
"""

from __future__ import annotations

import typer

from visionctl.cli import local, ml, platform, release

app = typer.Typer(help="Train, serve, package and deploy the Vision AI image classifier.",
                  epilog="Exit codes: 0 ok, 1 failed (the message names the step and what to do), 2 bad usage.",
                  no_args_is_help=True, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(ml.app)
app.add_typer(platform.app)
app.add_typer(local.app)
app.add_typer(release.app)
