"""docs/operations.md's abuse table ("after" column) states what the saved full run of
benchmarks/abuse.py measured: requests, answers, server CPU seconds and peak RSS per attack."""

from __future__ import annotations

import json
import re

from readme import doc
from repo import ROOT

# Table row (its first cell's start) → the attack's key in benchmarks/results/abuse.json.
ROWS = {"progressive JPEG": "progressive JPEG, last scan ×2000", "4000² PNG": "4000² PNG ×8 concurrent",
        "4000² 16-bit PNG": "4000² 16-bit PNG ×8 concurrent", "batch of 64": "batch of 64 × 2048² PNGs",
        "10 MiB of": "10 MiB of empty instances", "JSON with a 5,000-digit": "5,000-digit integer",
        "unauthenticated 19 MiB": "unauthenticated 19 MiB uploads", "2,000 made-up": "2,000 made-up methods",
        "bad header": "bad header line / 431 / 501", "1,000 wrong API keys": "1,000 wrong keys",
        "valid predictions": "valid predictions (control)"}


def rows() -> dict[str, list[str]]:
    table = doc("docs/operations.md").split("| attack | requests |", 1)[1].split("\n\n", 1)[0]
    return {cells[0]: cells for line in table.splitlines()[2:]
            if (cells := [c.strip() for c in line.strip().strip("|").split("|")])}


def test_the_abuse_table_is_the_saved_full_run():
    saved = json.loads((ROOT / "benchmarks" / "results" / "abuse.json").read_text())
    assert not saved["short"]
    table, checked = rows(), 0
    for start, key in ROWS.items():
        cells = next(c for name, c in table.items() if name.startswith(start))
        result = saved["results"][key]
        assert int(cells[1].replace(",", "")) == result["requests"], start
        after = cells[3]
        for status in result["statuses"]:  # every status the run got is named
            assert status in after or start.startswith(("2,000", "1,000")), (start, status, after)
        numbers = re.fullmatch(r"(\d+), ([\d.]+) s, ([\d,]+) MiB", after)
        if numbers:  # answers, CPU-s, peak RSS
            assert float(numbers.group(2)) == round(result["cpu_s"], len(numbers.group(2).split(".")[1])), start
            assert abs(int(numbers.group(3).replace(",", "")) - result["peak_rss_mib"]) <= 0.5, start
            checked += 1
    assert checked >= 5
    stalled = saved["results"]["stalled sockets"]
    probe_row = next(c for name, c in table.items() if name.startswith("600 half-sent"))
    assert f"`/healthz` {stalled['probes']['/healthz']['ms']:.0f} ms" in probe_row[3]
    assert f"all {stalled['answered_or_closed_after_deadline']} cut at the deadline" in probe_row[3]
