"""README.md and docs/*.md as tests read them: the texts and their shell code blocks."""

from __future__ import annotations

from repo import ROOT

README = (ROOT / "README.md").read_text()
# Every document users follow, by path relative to the repository root (README first).
DOCS = {"README.md": README} | {f"docs/{p.name}": p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}


def doc(path: str) -> str:
    """One document's text, e.g. ``doc("docs/deploy.md")``."""
    return DOCS[path]


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of ``text`` (up to the next ``## `` heading)."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def shell_blocks(text: str) -> list[str]:
    """Bodies of fenced code blocks that are shell (```bash, ```sh, ```console or no language)."""
    blocks, body, lang = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if body is None:
                body, lang = [], line[3:].strip()
            else:
                if lang in ("", "bash", "sh", "console"):
                    blocks.append("\n".join(body))
                body = None
        elif body is not None:
            body.append(line)
    return blocks
