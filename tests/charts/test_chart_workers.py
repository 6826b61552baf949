"""backend.workers: the chart's VISION_WORKERS follows the backend's CPU limit unless set (real helm)."""

from __future__ import annotations

import pytest
from helm_render import find, load_docs, template

from backend.cpus import cpu_budget


def rendered_workers(*set_values: str) -> str:
    docs = load_docs(template(set_values=set_values, skip_tests=True).stdout)
    (deployment,) = [d for d in find(docs, "Deployment") if d["metadata"]["name"].endswith("-backend")]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    return env["VISION_WORKERS"]


@pytest.mark.parametrize("set_values, expected", [
    ((), "1"),                                                       # default: the 1-CPU limit
    (("backend.resources.limits.cpu=2",), "2"),
    (("backend.resources.limits.cpu=1500m",), "1"),                  # whole CPUs only: none throttled
    (("backend.resources.limits.cpu=3000m",), "3"),
    (("backend.resources.limits.cpu=250m",), "1"),
    (("backend.resources.limits.cpu=null",), "auto"),                # no limit: the pod counts its CPUs
    (("backend.workers=3",), "3"),                                   # explicit wins
    (("backend.workers=auto", "backend.resources.limits.cpu=4"), "auto"),
])
def test_workers_follow_the_cpu_limit(set_values, expected):
    assert rendered_workers(*set_values) == expected


def test_the_derived_count_matches_what_auto_would_start_under_that_quota(tmp_path):
    """The chart and backend.cpus round a fractional limit the same way (down, at least 1)."""
    for millicores in (250, 1000, 1500, 2000, 2999):
        (tmp_path / "cpu.max").write_text(f"{millicores * 100} 100000")
        (tmp_path / "cgroup").write_text("0::/\n")
        budget = cpu_budget(tmp_path / "cgroup", tmp_path, affinity=64)
        assert rendered_workers(f"backend.resources.limits.cpu={millicores}m") == str(budget.count)


@pytest.mark.parametrize("value", ["0", "65", "lots"])
def test_invalid_workers_are_refused_by_the_schema(value):
    proc = template(set_values=(f"backend.workers={value}",), check=False)
    assert proc.returncode != 0 and "at '/backend/workers'" in proc.stderr
