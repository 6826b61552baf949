"""README.md as tests read it: the text and its shell code blocks."""

from __future__ import annotations

from repo import ROOT

README = (ROOT / "README.md").read_text()


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
