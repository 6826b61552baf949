"""The generated block of a document, between ``<!-- name -->`` and ``<!-- /name -->``: rewritten, or checked.

Shared by every doc generator (scripts/ and the benchmarks' ``--doc`` modes), so a block is marked
the same way everywhere and "stale" means the same for each: the document with the block
regenerated differs from the one committed.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The opening and closing marker of block ``name``."""
    return f"<!-- {name} -->", f"<!-- /{name} -->"


def write(doc: Path, name: str, body: str, *, check: bool, script: str, missing_heading: str | None = None,
          inline: bool = False) -> int:
    """Write ``body`` as block ``name`` of ``doc``, or with ``check`` print the diff and return 1 when
    the committed file differs. A document without the block gets it appended under
    ``missing_heading`` (if given). ``script`` is the command that regenerates it, relative to scripts/.
    An ``inline`` block sits within a line (a table cell, a sentence): no line breaks around it."""
    begin, end = markers(name)
    newline = "" if inline else "\n"
    block = begin + newline + body.strip("\n") + newline + end
    text = doc.read_text(encoding="utf-8")
    if begin in text:
        head, rest = text.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    elif missing_heading is not None:
        new = text.rstrip() + f"\n\n{missing_heading}\n\n" + block + "\n"
    else:
        raise SystemExit(f"{doc}: no {begin!r} marker")
    if check:
        if new != text:
            shown = f"{doc.parent.name}/{doc.name}"
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), shown, "generated"))
            print(f"{shown} is stale: run .venv/bin/python scripts/{script}", file=sys.stderr)
            return 1
        return 0
    doc.write_text(new, encoding="utf-8")
    return 0
