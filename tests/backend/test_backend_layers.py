"""The backend's internal layering: pyproject.toml's backend contracts hold and catch a cycle, the
shared contract stays stdlib-only, and every error code the backend spells is one it defines."""

from __future__ import annotations

import ast
import sys

import pytest
from import_lint import lint, lint_with
from repo import ROOT

from backend.contract import ERROR_CODES

LAYERS = "backend layers: runtime > web > serving > protection > releases > model > shared > errors > contract"
WEB = "web layers: app > blueprints > openapi > plumbing"
NO_WEB = "the model side and the pipeline import no web framework or server"
NO_WAITRESS = "the Flask app knows nothing of Waitress"
ACYCLIC = "backend modules import each other without cycles"
CONTRACTS = (LAYERS, WEB, NO_WEB, NO_WAITRESS, ACYCLIC)


def test_backend_contracts_are_kept():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in proc.stdout, proc.stdout


def test_at_most_eight_modules_at_the_top():
    """The backend is grouped by concern: what is left at the top is what every package shares."""
    top = sorted(p.name for p in (ROOT / "backend").glob("*.py"))
    assert len(top) <= 8, top


@pytest.mark.parametrize("module, violation, broken, reported", [
    # the cycle this layering replaced: a blueprint reaching back into the factory that registers it
    ("backend/web/api.py", "from backend.web.app import create_app", {WEB, ACYCLIC},
     "backend.web.api -> backend.web.app"),
    ("backend/web/state.py", "from backend.web import api", {WEB, ACYCLIC}, "backend.web.state -> backend.web.api"),
    ("backend/contract.py", "from backend import errors", {LAYERS, ACYCLIC}, "backend.contract -> backend.errors"),
    # the model side serves the CLI and the evaluation too: no Flask, no request plumbing
    ("backend/model/preprocessing.py", "import flask", {NO_WEB}, "backend.model.preprocessing -> flask"),
    ("backend/model/inference.py", "from backend.web import responses", {LAYERS, NO_WEB, ACYCLIC},
     "backend.model.inference -> backend.web.responses"),
    ("backend/releases/router.py", "from backend.protection import ratelimit", {LAYERS},
     "backend.releases.router -> backend.protection.ratelimit"),
    # the Flask app knows nothing of the Waitress layer that guards it (no cycle, but upside down)
    ("backend/web/app.py", "from backend.protection import guard", {NO_WAITRESS},
     "backend.web.app -> backend.protection.guard"),
    ("backend/web/app.py", "from backend.runtime import server", {LAYERS, NO_WAITRESS, ACYCLIC},
     "backend.web.app -> backend.runtime.server"),
])
def test_a_wrong_way_import_inside_the_backend_breaks_the_build(tmp_path, module, violation, broken, reported):
    proc = lint_with(tmp_path, module, violation)
    assert proc.returncode != 0, proc.stdout
    for name in CONTRACTS:
        assert f"{name} {'BROKEN' if name in broken else 'KEPT'}" in proc.stdout, proc.stdout
    assert reported in proc.stdout or reported.replace("backend.", ".", 2) in proc.stdout, proc.stdout


def test_the_contract_imports_only_the_standard_library():
    """The frontend image copies backend/contract.py alone: it must import nothing else."""
    tree = ast.parse((ROOT / "backend" / "contract.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert not {m for m in imported if m not in sys.stdlib_module_names and m != "__future__"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]  # no relative imports


def spelled_error_codes() -> dict[str, set[str]]:
    """String literals the backend uses as an error code — ``code="..."`` arguments and ``code`` /
    ``error_code`` class attributes — by module."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "backend").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            values = []
            if isinstance(node, ast.keyword) and node.arg == "code":
                values.append(node.value)
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ("code", "error_code")
                                                      for t in node.targets):
                values.append(node.value)
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.setdefault(str(path.relative_to(ROOT)), set()).add(value.value)
    return found


def test_every_error_code_the_backend_spells_is_a_contract_code():
    unknown = {module: codes - set(ERROR_CODES) for module, codes in spelled_error_codes().items()
               if codes - set(ERROR_CODES)}
    assert unknown == {}, f"error codes not in backend.contract.ERROR_CODES: {unknown}"


def test_no_error_restates_the_status_its_code_implies():
    """The HTTP status comes from the error code (``backend.contract.ERROR_CODES``), never from the
    place that raises: no ``ApiError(..., status=...)`` anywhere in the backend."""
    restated = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in sorted((ROOT / "backend").rglob("*.py"))
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                in ("ApiError", "InputError", "InvalidBase64", "UnsupportedImage", "ImageTooLarge")
                and any(k.arg == "status" for k in node.keywords)]
    assert restated == []


@pytest.mark.parametrize("code, status", sorted(ERROR_CODES.items()))
def test_an_errors_status_is_its_codes(code, status):
    from backend.errors import ApiError

    error = ApiError("message", code=code)
    assert error.status == status
    with pytest.raises(TypeError):
        ApiError("message", code=code, status=200)  # a status cannot be given beside the code
