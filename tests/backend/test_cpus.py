"""VISION_WORKERS=auto: the CPU count from affinity and cgroup quotas (fake cgroup trees), and a real
server started under a reduced affinity mask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.config import Config
from backend.cpus import cgroup_quota, cpu_budget, usable_cpus
from devkit.backend_server import BackendServer, test_model_dir


def fake_tree(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "sys-fs-cgroup"
    root.mkdir()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_cgroup)
    return proc, root


def budget(tmp_path, proc_cgroup, files, affinity=16):
    proc, root = fake_tree(tmp_path, proc_cgroup, files)
    return cpu_budget(proc, root, affinity=affinity)


@pytest.mark.parametrize("cpu_max, expected", [
    ("max 100000", 16),          # no quota: the affinity decides
    ("100000 100000", 1),        # docker --cpus 1 / a Kubernetes limit of "1"
    ("200000 100000", 2),
    ("150000 100000", 1),        # 1.5 CPUs: round down, so the one worker is never throttled
    ("50000 100000", 1),         # 500m: still one worker
    ("99999 33333", 3),          # a quota that is a whole number only up to rounding
    ("3200000 100000", 16),      # a quota above the affinity: the affinity decides
])
def test_cgroup_v2_cpu_max_in_a_container_namespace(tmp_path, cpu_max, expected):
    b = budget(tmp_path, "0::/\n", {"cpu.max": cpu_max + "\n"})
    assert b.count == expected
    assert b.source == ("affinity" if expected == 16 else "cgroup v2 cpu.max")


def test_cgroup_v2_the_tightest_ancestor_wins(tmp_path):
    # A pod-level limit of 2 CPUs above a container without its own quota, seen from the host
    # namespace (full path in /proc/self/cgroup).
    b = budget(tmp_path, "0::/kubepods/pod1/ctr\n", {
        "cpu.max": "max 100000",
        "kubepods/pod1/cpu.max": "200000 100000",
        "kubepods/pod1/ctr/cpu.max": "max 100000",
    })
    assert (b.count, b.quota, b.source) == (2, 2.0, "cgroup v2 cpu.max")


def test_cgroup_v1_cfs_quota(tmp_path):
    proc = "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n0::/\n"
    b = budget(tmp_path, proc, {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000",
                                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
                                "cpu,cpuacct/cpu.cfs_quota_us": "-1",
                                "cpu,cpuacct/cpu.cfs_period_us": "100000"})
    assert (b.count, b.source) == (3, "cgroup v1 cfs quota")


def test_cgroup_v1_unlimited_and_mount_root_fallback(tmp_path):
    # Inside a v1 container the path names the host's cgroup, which is not under the mount: the
    # mount root is the container's own cgroup.
    proc = "4:cpu:/docker/abc\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert budget(tmp_path / "a", proc, {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}).count == 16
    limited = {"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}
    assert budget(tmp_path / "b", proc, limited).count == 1


def test_affinity_below_the_quota_decides(tmp_path):
    b = budget(tmp_path, "0::/\n", {"cpu.max": "400000 100000"}, affinity=2)
    assert (b.count, b.affinity, b.quota, b.source) == (2, 2, 4.0, "affinity")


@pytest.mark.parametrize("proc, files", [
    ("", {}),                                     # no /proc/self/cgroup (not Linux, or hidden)
    ("0::/\n", {}),                               # v2 without the cpu controller enabled
    ("0::/\n", {"cpu.max": "garbage"}),
    ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "x", "cpu/cpu.cfs_period_us": "0"}),
])
def test_missing_or_unreadable_cgroup_files_mean_no_quota(tmp_path, proc, files):
    proc_path, root = fake_tree(tmp_path, proc, files)
    assert cgroup_quota(proc_path, root)[0] is None
    assert cpu_budget(proc_path, root, affinity=3).count == 3


def test_this_machine():
    b = cpu_budget()
    assert 1 <= b.count <= b.affinity == len(os.sched_getaffinity(0))
    assert usable_cpus() == b.count


def test_config_auto_is_the_default_and_a_number_overrides_it(tmp_path):
    env = {"VISION_MODEL_DIR": str(tmp_path)}
    assert Config.from_env(env).workers == usable_cpus()
    assert Config.from_env({**env, "VISION_WORKERS": "AUTO"}).workers == usable_cpus()
    assert Config.from_env({**env, "VISION_WORKERS": "3"}).workers == 3


def _started_workers(cpus: set[int]) -> int:
    """Start the real server with VISION_WORKERS=auto under an affinity mask; how many serve?"""
    with BackendServer(model_dir=test_model_dir(), cpus=cpus,
                       env={"VISION_WORKERS": "auto", "VISION_THREADS": "2"}) as srv:
        code = srv.stop()
        assert code == 0, f"the server exited with {code} after SIGTERM; its log:\n{srv.logs()[-6000:]}"
        pids = srv.worker_pids()
    return len(pids) or 1


def test_auto_starts_one_worker_per_cpu_in_the_affinity_mask():
    mine = sorted(os.sched_getaffinity(0))
    assert _started_workers({mine[0]}) == 1
    if len(mine) < 2:
        pytest.fail("this test needs a machine with at least 2 CPUs")
    assert _started_workers(set(mine[:2])) == 2
