"""README.md and docs/*.md are documentation users run: their commands, paths, answers and numbers
must be real. Every `curl -X POST` is run against a real backend and its answer checked; the README's
answer to the assignment's curl is compared with what the server prints; its design-review figures
are read back from the saved benchmark results."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import typer.main
from readme import DOCS, README, section, shell_blocks
from repo import ROOT as REPO_ROOT

from visionctl.cli import app
from visionctl.ml.train_config import make_config

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import peers  # noqa: E402  (a script folder: the README's peers figure is its readme_figure)

COMMAND_LINES = [(path, line.strip().removeprefix("$ ")) for path, text in DOCS.items()
                 for block in shell_blocks(text) for line in block.splitlines()
                 if line.strip() and not line.strip().startswith("#")]
# Inline code that starts with the CLI's name, e.g. `visionctl up --dry-run` (placeholders excluded).
INLINE = [span for text in DOCS.values() for span in re.findall(r"`(visionctl[^`\n]*)`", text) if "<" not in span]
RESULTS = REPO_ROOT / "benchmarks" / "results"


def _visionctl_invocations() -> list[list[str]]:
    """Every `visionctl ...` invocation in code blocks and inline code spans."""
    found = []
    for text in [line for _, line in COMMAND_LINES] + INLINE:
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


# -- the README's shape --------------------------------------------------------------------------

def test_readme_is_concise_and_links_every_subject_document():
    assert len(README.splitlines()) <= 250
    for path in DOCS:
        if path != "README.md":
            assert f"]({path}" in README, f"README does not link {path}"


def test_readme_covers_the_four_requirements_and_the_design_review():
    requirements = section(README, "The four requirements")
    for n, name in enumerate(("The model", "The REST API", "Containers", "Kubernetes"), 1):
        assert f"**{n}. {name}**" in requirements
    table = section(README, "Design review")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    for quality in ("scalability", "performance", "reliability", "modifiability", "observability", "security"):
        row = rows[quality]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5 and all(cells), f"{quality}: strength, weakness, figure and depth all filled"
        assert re.search(r"\]\((benchmarks/results|models)/[\w/.-]+\.json\)", cells[3]), f"{quality}: no saved result"
        assert re.search(r"\]\(docs/[\w.-]+\.md", cells[4]), f"{quality}: no link to depth"


# Each figure the design review quotes, formatted from the saved results it cites.
def _figures() -> dict[str, str]:
    def load(name):
        return json.loads((RESULTS / name).read_text())

    scaling = {w["workers"]: w for w in load("scaling.json")["workers"]}
    at64 = {n: next(r for r in w["runs"] if r["concurrency"] == 64) for n, w in scaling.items()}
    w2 = next(r for r in load("workers-2/load.json")["runs"]["predict"] if r["concurrency"] == 8)
    abuse = load("abuse.json")["results"]
    stalled = abuse["stalled sockets"]
    big = abuse["4000² 16-bit PNG ×8 concurrent"]
    keys = abuse["1,000 wrong keys"]
    healthz = next(r for r in load("hot_path.json")["inproc"] if r["path"] == "/healthz")
    card = json.loads((REPO_ROOT / "models" / "fashion-mnist.json").read_text())
    minutes = sum(h["seconds"] for h in card["metrics"]["history"]) / 60
    return {
        "scalability": f"c=64: 1 worker {at64[1]['rps']:.0f} req/s, 2 workers {at64[2]['rps']:.0f} req/s, "
                       f"{scaling[2]['rss_mib_per_worker']:.0f} MiB RSS per worker",
        "performance": f"{w2['rps']:.0f} req/s, p99 {w2['latency_ms']['p99']:.2f} ms at c=8",
        "performance (peers)": peers.readme_figure(load("peers.json")),
        "reliability": f"{stalled['stalled']} stalled sockets: `/healthz` still answers in "
                       f"{stalled['probes']['/healthz']['ms']:.0f} ms, "
                       f"all {stalled['answered_or_closed_after_deadline']} cut at the deadline",
        "modifiability": f"{len(card['metrics']['history'])} epochs ≈ {minutes:.1f} min to "
                         f"{card['metrics']['test_accuracy']:.2%}".replace("%", " %"),
        "observability": f"one `/healthz`: {healthz['cpu_us_per_request']:.0f} µs of CPU",
        "security": f"{keys['requests']:,} wrong keys: {keys['statuses'].get('429', 0):,} × 429; 8 concurrent 4000² "
                    f"16-bit PNGs peak at {big['peak_rss_mib']:.0f} MiB, "
                    f"`/readyz` answers in {big['readyz']['max_ms']:.0f} ms",
    }


@pytest.mark.parametrize("quality,figure", list(_figures().items()))
def test_design_review_figures_are_the_saved_results(quality, figure):
    assert figure in section(README, "Design review"), f"{quality}: README should say {figure!r}"


def test_documented_training_epochs_are_the_presets():
    """The train commands' comments in docs/model.md state each dataset's preset epochs."""
    quoted = re.findall(r"visionctl train ([\w-]+) .*?(\d+) epochs", DOCS["docs/model.md"])
    assert {d for d, _ in quoted} == {"mnist", "fashion-mnist"}
    for dataset, epochs in quoted:
        assert int(epochs) == make_config(dataset).epochs, dataset


# -- commands and paths ---------------------------------------------------------------------------

def test_docs_mention_visionctl_commands():
    assert len(_visionctl_invocations()) >= 10


@pytest.mark.parametrize("argv", _visionctl_invocations(), ids=lambda a: " ".join(a)[:60] or "visionctl")
def test_every_documented_visionctl_command_exists_with_its_options(argv):
    cmd = _resolve(argv)
    assert cmd is not None, f"the docs document `visionctl {' '.join(argv)}` but there is no such command"
    known = {"--help", "-h"} | {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    for word in argv:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"`visionctl {' '.join(argv)}`: unknown option {word}"


@pytest.mark.parametrize("path", list(DOCS))
def test_every_documented_path_exists(path):
    """Backticked repo paths (from the root) and markdown links (from the document's folder) exist."""
    text, base = DOCS[path], (REPO_ROOT / path).parent
    top_level = {p.name for p in REPO_ROOT.iterdir()}  # so `application/json` is not taken for a path
    for ref in sorted(set(re.findall(r"`((?:\.{0,2}/)?[\w.-]+(?:/[\w.*<>-]+)+/?)`", text))):
        if "<" in ref or "*" in ref or ref.split("/")[0] not in top_level:
            continue
        assert (REPO_ROOT / ref).exists(), f"{path} mentions {ref}, which does not exist"
    for link in sorted(set(re.findall(r"\]\(((?!https?:)[^)#\s]+)(?:#[^)\s]*)?\)", text))):
        assert (base / link).resolve().exists(), f"{path} links {link}, which does not exist"


def test_every_link_to_a_section_names_a_heading_of_that_document():
    for path, text in DOCS.items():
        for target, anchor in re.findall(r"\]\(((?!https?:)[^)#\s]*)#([\w-]+)\)", text):
            linked = text if not target else (REPO_ROOT / path).parent.joinpath(target).resolve().read_text()
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                     for h in re.findall(r"^#{1,4} (.+)$", linked, re.M)}
            assert anchor in slugs, f"{path}: #{anchor} is not a heading of {target or path}"


def test_the_readme_test_command_is_what_ci_runs():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in shell_blocks(README)[2] and "scripts/test.sh" in ci


# Programs the documented commands may start: ours, and the tools the prerequisites say to install.
KNOWN_PROGRAMS = {"visionctl", "python", "python3.11", "curl", "docker", "helm", "kubectl", "k3d", "kind", "minikube"}


def test_shell_snippets_parse_and_start_known_programs():
    """Every command line parses as shell words and starts either one of our executable scripts or
    a program the docs say where to get (a typo'd or removed script fails here)."""
    checked = 0
    for path, line in COMMAND_LINES:
        words = [w for w in shlex.split(line.rstrip("\\"), comments=True)
                 if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", w)]
        if not words:
            continue
        program = words[0]
        if "/" in program and not program.startswith(".venv/bin/"):
            script = REPO_ROOT / program
            assert script.is_file() and os.access(script, os.X_OK), f"{path}: `{line}`: {program} is not executable"
        else:
            assert program.removeprefix(".venv/bin/") in KNOWN_PROGRAMS, f"{path}: `{line}`: unknown program {program}"
        checked += 1
    assert checked >= 20


# -- the curls, run ---------------------------------------------------------------------------------

CURLS = [(path, line) for path, line in COMMAND_LINES if line.startswith("curl -X POST")]
SAMPLE = REPO_ROOT / "samples" / "mnist" / "7-7.png"
# The assignment's form: curl -X POST <endpoint> -H 'Content-Type: application/json' -d '{"base64": <image base64>}'
ASSIGNMENT = re.compile(r"""curl -X POST (\S+) -H 'Content-Type: application/json' """
                        r"""-d '\{"base64": ([A-Za-z0-9+/=]+)\}'""")


@pytest.fixture(scope="module")
def server():
    from devkit.backend_server import BackendServer

    with BackendServer() as running:
        yield running


def run_curl(line: str, url: str) -> subprocess.CompletedProcess:
    cmd = line.replace("http://localhost:8080", url)
    return subprocess.run(["bash", "-c", cmd + " --silent --show-error --fail-with-body"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_assignments_curl_and_its_answer_open_the_readme(server):
    """Within the first 80 lines: the assignment's exact form with the bundled sample pasted in, and
    the answer the server really prints for it (same fields, label, class, model and version;
    probabilities equal to 1e-6)."""
    head = "\n".join(README.splitlines()[:80])
    match = next(m for line in head.splitlines() if (m := ASSIGNMENT.fullmatch(line)))
    assert base64.b64decode(match.group(2)) == SAMPLE.read_bytes(), "the pasted base64 is samples/mnist/7-7.png"
    documented = json.loads(re.search(r"```json\n(.*?)\n```", head, re.S).group(1))
    out = run_curl(match.group(0), server.url)
    assert out.returncode == 0, out.stderr + out.stdout
    printed = json.loads(out.stdout)
    hint = f"README's answer is stale; the server prints:\n{out.stdout}"
    assert set(printed) == set(documented), hint
    for key in ("model", "model_version", "label", "class_index"):
        assert printed[key] == documented[key], hint
    assert printed["probabilities"] == pytest.approx(documented["probabilities"], abs=1e-6), hint
    assert printed["confidence"] == pytest.approx(documented["confidence"], abs=1e-6), hint


@pytest.mark.parametrize("path,line", CURLS, ids=[f"{p}:{line.split()[3].strip(chr(34))}" for p, line in CURLS])
def test_documented_curl_commands_work_against_a_real_backend(path, line, server):
    """Each documented curl (localhost:8080 swapped for the loopback test server) through bash: the
    answer's class is the sample's (its file name starts with the class index), a batch of one or a
    single prediction alike."""
    out = run_curl(line, server.url)
    assert out.returncode == 0, out.stderr + out.stdout
    body = json.loads(out.stdout)
    sample = re.search(r"samples/[\w-]+/(\d)-", line)
    expected = int(sample.group(1)) if sample else 7  # the inline base64 is samples/mnist/7-7.png
    if "/explain" in line:
        assert body["class_index"] == expected and len(body["attributions"]) == 28
        return
    if "samples/fashion-mnist/" in line and "/v1/models/fashion-mnist/" not in line:
        # Clothing sent to the digit model: the verdict must say so (strict mode abstains).
        assert body["in_distribution"] is False and body["reason"]
        assert body["label"] is None if "strict" in line else body["label"] is not None
        return
    assert body["class_index"] == expected and abs(sum(body["probabilities"]) - 1) < 1e-4
    label = re.search(r"\s# → \{\"model\": \"([\w-]+)\", \"label\": \"(\w+)\"", line)
    if label:  # a documented answer on the same line
        assert (body["model"], body["label"]) == label.groups()


def test_every_documented_curl_answer_names_the_model_and_label_that_answer(server):
    """Deploy blocks end with `# → {"model": ..., "label": ...}` under their curl; it must be the answer."""
    checked = 0
    for path, text in DOCS.items():
        for block in shell_blocks(text):
            lines = block.splitlines()
            for curl, answer in zip(lines, lines[1:], strict=False):
                documented = re.match(r'# → \{"model": "([\w-]+)", "label": "(\w+)", "class_index": (\d+)', answer)
                if curl.startswith("curl -X POST") and documented:
                    body = json.loads(run_curl(curl, server.url).stdout)
                    assert (body["model"], body["label"], str(body["class_index"])) == documented.groups(), path
                    checked += 1
    assert checked >= 5
