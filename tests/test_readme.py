"""The README is documentation users run: its commands, paths and numbers must be real."""

from __future__ import annotations

import os
import re
import shlex

import pytest
import typer.main
from readme import README, shell_blocks
from repo import ROOT as REPO_ROOT

from visionctl.cli import app

COMMAND_LINES = [line.strip().removeprefix("$ ") for block in shell_blocks(README)
                 for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
# Inline code that starts with the CLI's name, e.g. `visionctl up --dry-run` (placeholders excluded).
INLINE = [span for span in re.findall(r"`(visionctl[^`\n]*)`", README) if "<" not in span]


def _visionctl_invocations() -> list[list[str]]:
    """Every `visionctl ...` invocation in code blocks and inline code spans."""
    texts = COMMAND_LINES + INLINE
    found = []
    for text in texts:
        for part in re.split(r"&&|\|\||;|\|", text.split(" #")[0]):
            words = part.split()
            for i, w in enumerate(words):
                if w.endswith("visionctl") and "/" not in w.replace(".venv/bin/visionctl", ""):
                    found.append(words[i + 1:])
                    break
    return found


def _resolve(argv: list[str]):
    cmd = typer.main.get_command(app)
    for word in argv:
        if word.startswith("-") or not hasattr(cmd, "commands"):  # a leaf command: rest are its args
            break
        sub = cmd.commands.get(word)
        if sub is None:
            return None
        cmd = sub
    return cmd


def test_readme_mentions_visionctl_commands():
    assert len(_visionctl_invocations()) >= 10


@pytest.mark.parametrize("argv", _visionctl_invocations(), ids=lambda a: " ".join(a)[:60] or "visionctl")
def test_every_documented_visionctl_command_exists_with_its_options(argv):
    cmd = _resolve(argv)
    assert cmd is not None, f"README documents `visionctl {' '.join(argv)}` but there is no such command"
    known = {"--help", "-h"} | {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    for word in argv:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"`visionctl {' '.join(argv)}`: unknown option {word}"


def test_every_documented_path_exists():
    """Backticked repo paths (files and folders) in the README exist."""
    candidates = set(re.findall(r"`((?:\.{0,2}/)?[\w.-]+(?:/[\w.*<>-]+)+/?)`", README))
    candidates |= set(re.findall(r"\]\(((?!https?:)[^)#\s]+)\)", README))  # markdown links/images
    top_level = {p.name for p in REPO_ROOT.iterdir()}  # so `application/json` is not taken for a path
    checked = 0
    for path in sorted(candidates):
        if "<" in path or "*" in path or path.split("/")[0] not in top_level:
            continue
        assert (REPO_ROOT / path).exists(), f"README mentions {path}, which does not exist"
        checked += 1
    assert checked >= 10


def test_the_readme_test_command_is_what_ci_runs():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in README and "scripts/test.sh" in ci


# Programs README's commands may start: ours, and the tools its prerequisites tell users to install.
KNOWN_PROGRAMS = {"visionctl", "python", "python3.11", "curl", "docker", "helm", "kubectl", "k3d", "kind", "minikube"}


def test_shell_snippets_parse_and_start_known_programs():
    """Every command line parses as shell words and starts either one of our executable scripts or
    a program README says where to get (a typo'd or removed script fails here)."""
    checked = 0
    for line in COMMAND_LINES:
        words = [w for w in shlex.split(line.rstrip("\\"), comments=True)
                 if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", w)]
        if not words:
            continue
        program = words[0]
        if "/" in program and not program.startswith(".venv/bin/"):
            path = REPO_ROOT / program
            assert path.is_file() and os.access(path, os.X_OK), f"`{line}`: {program} is not an executable here"
        else:
            assert program.removeprefix(".venv/bin/") in KNOWN_PROGRAMS, f"`{line}`: unknown program {program}"
        checked += 1
    assert checked >= 20


CURLS = [line for line in COMMAND_LINES if line.startswith("curl -X POST")]


def test_readme_curl_has_the_documented_form():
    form = r"""curl -X POST "[^"]+" --header "Content-Type: application/json" -d '\{"base64": "[^"]+"\}'"""
    assert any(re.fullmatch(form, line) for line in CURLS)


@pytest.mark.parametrize("line", CURLS, ids=lambda line: line.split('"')[1])
def test_readme_curl_commands_work_against_a_real_backend(line, tmp_path):
    """Run each documented curl (localhost:8080 swapped for a loopback test server) through bash."""
    import json
    import subprocess

    from devkit.backend_server import BackendServer

    with BackendServer() as server:
        cmd = line.replace("http://localhost:8080", server.url)
        out = subprocess.run(["bash", "-c", cmd + " --silent --show-error --fail-with-body"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    body = json.loads(out.stdout)
    sample = re.search(r"samples/[\w-]+/(\d)-", line)
    expected = int(sample.group(1)) if sample else 7  # the inline base64 is samples/mnist/7-7.png
    assert body["class_index"] == expected and abs(sum(body["probabilities"]) - 1) < 1e-4
