"""How many CPUs this process may really use: the affinity mask and the cgroup CPU quota.

``os.cpu_count()`` is the host's core count. In a container limited to 1 CPU on a 16-core host it
says 16, and 16 GIL-bound workers would share one core's worth of CFS quota — each throttled for
most of every period, which shows up as latency spikes, not throughput. The usable count is the
smallest of

* the affinity mask (``taskset``, ``docker --cpuset-cpus``, Kubernetes static CPU manager);
* the cgroup v2 ``cpu.max`` quota/period of this process's cgroup and every ancestor
  (``docker --cpus``, a Kubernetes CPU limit);
* the cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` pair (older hosts).

A fractional quota is rounded *down* (at least 1): 1.5 CPUs gives one worker that can run flat
out, rather than two that are both throttled (the same rule as Uber's automaxprocs).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuBudget:
    count: int          # workers to start: min of the limits below, at least 1
    affinity: int       # CPUs in the affinity mask
    quota: float | None  # cgroup quota in CPUs (None = no quota)
    source: str         # which limit decided ("affinity", "cgroup v2 cpu.max", "cgroup v1 cfs quota")


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ancestors(root: Path, cgroup_path: str) -> list[Path]:
    """``root/<path>`` and each parent up to ``root``: a limit on any ancestor caps this cgroup too.

    Inside a container's cgroup namespace the path is ``/`` and the mount is the container's own
    cgroup; when the path does not exist under the mount (v1 without a namespace), the mount root
    is what the container sees.
    """
    parts = [p for p in cgroup_path.strip().split("/") if p and p != ".."]
    dirs = [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [d for d in dirs if d.is_dir()] or [root]


def _v2_quota(root: Path, cgroup_path: str) -> float | None:
    quotas = []
    for d in _ancestors(root, cgroup_path):
        raw = _read(d / "cpu.max")
        if not raw:
            continue
        fields = raw.split()
        if fields[0] == "max" or len(fields) < 2:
            continue
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        if quota > 0 and period > 0:
            quotas.append(quota / period)
    return min(quotas) if quotas else None


def _v1_quota(root: Path, cgroup_path: str) -> float | None:
    quotas = []
    for d in _ancestors(root, cgroup_path):
        quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        try:
            q, p = int(quota or "-1"), int(period or "0")
        except ValueError:
            continue
        if q > 0 and p > 0:
            quotas.append(q / p)
    return min(quotas) if quotas else None


def cgroup_quota(proc_cgroup: Path = Path("/proc/self/cgroup"),
                 cgroup_root: Path = Path("/sys/fs/cgroup")) -> tuple[float | None, str]:
    """The CPU quota of this process in CPUs (None when unlimited) and which cgroup version set it."""
    text = _read(proc_cgroup) or ""
    v2_path, v1_path = None, None
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_path = path
    if v1_path is not None:  # v1 (or hybrid with cpu on v1): the quota lives in the cpu hierarchy
        for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
            mount = cgroup_root / name
            if mount.is_dir():
                return _v1_quota(mount, v1_path), "cgroup v1 cfs quota"
    if v2_path is not None:
        return _v2_quota(cgroup_root, v2_path), "cgroup v2 cpu.max"
    return None, ""


def cpu_budget(proc_cgroup: Path = Path("/proc/self/cgroup"),
               cgroup_root: Path = Path("/sys/fs/cgroup"), affinity: int | None = None) -> CpuBudget:
    """Affinity and cgroup quota combined; the paths and affinity are parameters for tests."""
    cpus = _affinity() if affinity is None else affinity
    quota, version = cgroup_quota(proc_cgroup, cgroup_root)
    if quota is not None and quota < cpus:
        # 1e-9: 150000/100000 is 1.5 exactly, but a quota like 99999/33333 must still give 3.
        return CpuBudget(max(1, math.floor(quota + 1e-9)), cpus, quota, version)
    return CpuBudget(max(1, cpus), cpus, quota, "affinity")


def usable_cpus() -> int:
    """The number of CPUs this process can keep busy (what ``VISION_WORKERS=auto`` starts)."""
    return cpu_budget().count
