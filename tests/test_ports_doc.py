"""docs/ports.md states facts the code decides: the port numbers and their settings, which API
paths are open without a key, which are rate-limited or shed, and which tests check it. Each is
compared here with its single source, so the page cannot drift from the code."""

from __future__ import annotations

import re

import yaml
from repo import ROOT

from backend.protection import auth, guard, ratelimit
from visionctl import constants

DOC = (ROOT / "docs" / "ports.md").read_text()
VALUES = yaml.safe_load((ROOT / "charts" / "vision-ai" / "values.yaml").read_text())


def table(heading: str) -> list[list[str]]:
    """Body rows (cells stripped) of the first table after ``heading``."""
    lines = DOC.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:  # after the header and its separator
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def value(path: str):
    node = VALUES
    for key in path.split("."):
        node = node[key]
    return node


def test_port_table_matches_the_code_and_chart():
    rows = {r[0]: r for r in table("## Every port")}
    assert rows[f"{constants.BACKEND_PORT} (`http`)"][1].startswith("`VISION_PORT`")
    assert rows[f"{constants.METRICS_PORT} (`metrics`)"][1].startswith("`VISION_METRICS_PORT`")
    assert rows[f"{constants.FRONTEND_PORT} (`http`)"][1] == "`frontend.containerPort`"
    assert rows[f"{value('cloudflared.metricsPort')} (`metrics`)"][1] == "`cloudflared.metricsPort`"
    assert f"{constants.DEFAULT_HOST_PORT} on the host" in rows
    assert len(rows) == 5
    for name in re.findall(r"`((?:backend|frontend|cloudflared|networkPolicy|metrics)\.[A-Za-z.]+)`", DOC):
        value(name)  # every chart value the page names exists
    config = (ROOT / "backend" / "config.py").read_text()
    for env in set(re.findall(r"`(VISION_[A-Z_]+)`", DOC)):
        assert f'"{env}"' in config, env


def test_open_paths_table_is_the_auth_rate_limit_and_shedding_policy():
    listed, limited, shed = set(), set(), set()
    for cells in table("## What the API port answers without a key"):
        paths = set(re.findall(r"`(/[^`]*)`", cells[0]))
        listed |= paths
        limited |= paths if cells[2].startswith("yes") else set()
        shed |= paths if cells[3].startswith("yes") else set()
    assert listed == auth.OPEN_PATHS | {p + "*" for p in auth.OPEN_PREFIXES}
    assert listed - limited == set(ratelimit.EXEMPT_PATHS)
    assert listed - shed == set(guard.UNSHEDDABLE)
    assert "/metrics" not in auth.OPEN_PATHS | ratelimit.EXEMPT_PATHS | guard.UNSHEDDABLE


def test_every_test_the_page_cites_exists():
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", DOC)
    assert len(cited) >= 5
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert not name or f"def {name}(" in source, f"{path}::{name}"
