"""Concurrency and a bounded soak against the real server: every answer right, memory flat."""

from __future__ import annotations

import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from repo import SAMPLES

HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server_env():
    return {"VISION_LOG_LEVEL": "WARNING"}


def bodies() -> list[tuple[str, str]]:
    """(path, body) for every sample image of both models."""
    out = []
    for dataset in ("mnist", "fashion-mnist"):
        for png in sorted((SAMPLES / dataset).glob("*.png")):
            out.append((f"/v1/models/{dataset}/predict",
                        json.dumps({"base64": base64.b64encode(png.read_bytes()).decode()})))
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


_local = threading.local()


def _post(url: str, body: str) -> requests.Response:
    session = getattr(_local, "session", None) or requests.Session()
    _local.session = session
    return session.post(url, data=body, headers=HEADERS, timeout=30)


def test_hundreds_of_concurrent_requests_are_all_correct(server):
    cases = bodies()
    expected = {(p, b): requests.post(server.url + p, data=b, headers=HEADERS).json() for p, b in cases}
    jobs = [cases[i % len(cases)] for i in range(600)]
    with ThreadPoolExecutor(max_workers=48) as pool:
        responses = list(pool.map(lambda job: (job, _post(server.url + job[0], job[1])), jobs))
    for job, resp in responses:
        assert resp.status_code == 200, resp.text
        got, want = resp.json(), expected[job]
        assert (got["model"], got["label"]) == (want["model"], want["label"])
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    assert "Task queue depth" not in server.logs()  # no per-request log spam when requests queue


def test_soak_memory_stays_bounded(server):
    cases = bodies()

    def run(n: int) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = set(pool.map(lambda i: _post(server.url + cases[i % len(cases)][0],
                                                    cases[i % len(cases)][1]).status_code, range(n)))
        assert statuses == {200}

    run(600)  # warm-up: allocator pools, thread stacks, ORT arenas reach their working size
    before = rss_kib(server.proc.pid)
    run(3000)
    growth = rss_kib(server.proc.pid) - before
    assert growth < 20 * 1024, f"RSS grew by {growth} KiB over 3000 requests"
