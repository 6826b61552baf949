"""The generated block of a document, between its BEGIN and END markers: rewritten, or checked.

Shared by the doc generators (architecture.py, cli_reference.py, configuration.py) so "stale" means
the same for each: the document with the block regenerated differs from the one committed.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path


def update(doc: Path, begin: str, end: str, block: str, *, check: bool, script: str,
           missing_heading: str | None = None) -> int:
    """Write ``block`` (which starts with ``begin`` and ends with ``end``) into ``doc``, or with ``check``
    print the diff and return 1 when the committed file differs. A document without the markers gets
    the block appended under ``missing_heading`` (if given)."""
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
            name = f"{doc.parent.name}/{doc.name}"
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), name, "generated"))
            print(f"{name} is stale: run .venv/bin/python scripts/{script}", file=sys.stderr)
            return 1
        return 0
    doc.write_text(new, encoding="utf-8")
    return 0
