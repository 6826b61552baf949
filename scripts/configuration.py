"""Regenerate docs/configuration.md's backend table from backend/config.py itself.

    .venv/bin/python scripts/configuration.py           # rewrite the generated table
    .venv/bin/python scripts/configuration.py --check   # CI: exit 1 when the document is stale

Read from the code, not restated: each ``Config`` field's ``VISION_*`` variable (the name
``Config.from_env`` reads for it), its default (``Config()``'s value, or the literal ``from_env``
falls back to, e.g. ``auto``), the range ``from_env`` enforces, and its meaning — the first sentence
of the comment above the field. A field without such a comment fails the run.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import docblock  # sibling script: scripts/ is on sys.path when one is run

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "backend" / "config.py"
DOC = ROOT / "docs" / "configuration.md"
VARIABLE = re.compile(r"VISION_[A-Z0-9_]+")
RANGED = {"integer": "integer", "number": "number"}  # from_env's parsers that take (name, default, lo, hi)


class ConfigDocError(RuntimeError):
    pass


def field_comments(cls: ast.ClassDef, lines: list[str]) -> dict[str, str]:
    """Each field's comment block (the ``#`` lines right above it), joined into one paragraph."""
    out = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            block, i = [], node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                block.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            out[node.target.id] = " ".join(block)
    return out


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".")


class FromEnv:
    """What ``Config.from_env`` does with each field: which variable it reads, and how."""

    def __init__(self, fn: ast.FunctionDef):
        self.assigns: dict[str, list[ast.AST]] = {}
        self.defs: dict[str, ast.FunctionDef] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.assigns.setdefault(target.id, []).append(node.value)
            elif isinstance(node, ast.FunctionDef) and node is not fn:
                self.defs[node.name] = node
        made = next(n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and isinstance(n.value, ast.Call)
                    and isinstance(n.value.func, ast.Name) and n.value.func.id == "cls")  # return cls(...)
        self.fields = {kw.arg: kw.value for kw in made.keywords}

    def reach(self, node: ast.AST, seen: set[str] | None = None) -> list[ast.AST]:
        """``node`` and every expression it depends on through local names and local helpers."""
        seen = set() if seen is None else seen
        out = [node]
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id not in seen:
                seen.add(sub.id)
                for value in self.assigns.get(sub.id, []):
                    out += self.reach(value, seen)
                if sub.id in self.defs and sub.id not in ("get", "integer", "number", "rate"):
                    out += self.reach(self.defs[sub.id], seen)
        return out

    def describe(self, name: str) -> tuple[str, str | None, str] | None:
        """(variable, literal fallback or None, range text) for field ``name``; None if not from env."""
        if name not in self.fields:
            return None
        nodes = self.reach(self.fields[name])
        variables = sorted({n.value for node in nodes for n in ast.walk(node) if isinstance(n, ast.Constant)
                            and isinstance(n.value, str) and VARIABLE.fullmatch(n.value)})
        if not variables:
            return None
        if len(variables) != 1:
            raise ConfigDocError(f"Config.{name} reads {', '.join(variables)}: expected one variable")
        variable, fallback, bounds = variables[0], None, ""
        for node in nodes:
            for n in ast.walk(node):
                if isinstance(n, ast.BoolOp) and isinstance(n.op, ast.Or) and _reads(n.values[0], variable) \
                        and isinstance(n.values[-1], ast.Constant):
                    fallback = str(n.values[-1].value)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in RANGED \
                        and _reads(n, variable) and len(n.args) == 4:
                    lo, hi = (eval(compile(ast.Expression(a), "<config>", "eval"), {}) for a in n.args[2:])  # noqa: S307
                    bounds = f"{RANGED[n.func.id]} {_number(lo)}–{_number(hi)}"
        return variable, fallback, bounds


def _reads(node: ast.AST, variable: str) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == variable for n in ast.walk(node))


def _number(value) -> str:
    return f"{value:,}".replace(",", " ") if isinstance(value, int) and value >= 10_000 else f"{value:g}"


def _default(value) -> str:
    if value is None:  # the meaning says what an unset variable falls back to
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def rows(source: Path = SOURCE) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """(variable, default, range, meaning) per setting, and the internal variables."""
    text = source.read_text(encoding="utf-8")
    tree = ast.parse(text)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    from_env = FromEnv(next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "from_env"))
    comments = field_comments(cls, text.splitlines())
    defaults = _config_defaults(source)
    table, internal = [], []
    for name, comment in comments.items():
        found = from_env.describe(name)
        if found is None:
            continue
        variable, fallback, bounds = found
        if not comment:
            raise ConfigDocError(f"backend/config.py: Config.{name} ({variable}) has no comment saying what it means")
        if comment.startswith("Internal"):
            internal.append(variable)
            continue
        default = fallback if fallback is not None else _default(defaults[name])
        table.append((variable, default, bounds, first_sentence(comment)))
    return table, internal


def _config_defaults(source: Path) -> dict:
    """``Config()``'s field values, from the module at ``source`` (a copy in the staleness test)."""
    import dataclasses
    import importlib.util

    sys.path.insert(0, str(source.parent.parent))
    spec = importlib.util.spec_from_file_location("_config_for_docs", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return {f.name: getattr(module.Config(), f.name) for f in dataclasses.fields(module.Config)}


def generated(source: Path = SOURCE) -> str:
    table, internal = rows(source)
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["<!-- generated by scripts/configuration.py from backend/config.py; edit the comments there -->",
             "", "| variable | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{v}` | {f'`{d}`' if d else 'empty'} | {b or '—'} | {cell(m)} |" for v, d, b, m in table]
    if internal:
        lines += ["", "Set by the supervisor for its workers, never by hand: "
                  + ", ".join(f"`{v}`" for v in internal) + "."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/configuration.md is stale")
    args = parser.parse_args()
    try:
        block = generated()
    except ConfigDocError as exc:
        print(f"configuration: {exc}", file=sys.stderr)
        return 1
    return docblock.write(DOC, "configuration", block, check=args.check, script="configuration.py")

if __name__ == "__main__":
    sys.exit(main())
