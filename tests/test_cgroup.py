"""cgroup.py: finding a process's cgroup (v1, v2, hybrid, containers) and reading its files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.collect.base import Roots
from agent.collect.cgroup import (
    HYBRID,
    V1,
    V2,
    CpuStat,
    Mount,
    describe,
    find_cgroup,
    host_cpus,
    host_memory,
    oom_kill_count,
    parse_cfs_quota,
    parse_cpu_max,
    parse_keyed,
    parse_memory_limit,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_psi_some_avg10,
    read_cpu_quota,
    read_cpu_stat,
    read_memory_events,
    read_memory_limit,
    read_memory_usage,
    read_pressure,
    working_set,
)
from agent.errors import CollectorError, NoData

FIXTURES = Path(__file__).parent / "fixtures"
HOST = Roots.under(FIXTURES / "host-plain")
LIMITED = Roots.under(FIXTURES / "cgroup2-limited")
SLICE = Roots.under(FIXTURES / "slice-limited")
V1_BOX = Roots.under(FIXTURES / "cgroup1")
SCOPE = "/user.slice/user-1000.slice/session-3.scope"


def write_tree(base: Path, files: dict[str, str]) -> Roots:
    """Write a small tree of real files and return the Roots that point at it."""
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text(text)
    return Roots.under(base)


# --- pure parsers ------------------------------------------------------------------------------


def test_proc_cgroup_v2_and_v1_lines() -> None:
    """v2's "0::/path" is the "" controller; v1 lines list comma-joined controllers."""
    assert parse_proc_cgroup("0::/user.slice\n") == {"": "/user.slice"}
    assert parse_proc_cgroup("4:cpu,cpuacct:/docker/a\n1:name=systemd:/docker/a\n0::/\n") == {
        "cpu": "/docker/a",
        "cpuacct": "/docker/a",
        "name=systemd": "/docker/a",
        "": "/",
    }


@pytest.mark.parametrize("text", ["", "\n", "garbage", "0::relative", "4:memory"])
def test_proc_cgroup_malformed(text: str) -> None:
    """Empty or garbled cgroup files are collector errors naming the file."""
    with pytest.raises(CollectorError, match="/proc/<pid>/cgroup"):
        parse_proc_cgroup(text)


def test_mountinfo_keeps_cgroup_mounts_only() -> None:
    """Other mounts are skipped; v1 controllers come from the super options."""
    text = (FIXTURES / "cgroup1/proc/self/mountinfo").read_text()
    mounts = parse_mountinfo(text)
    assert len(mounts) == 11
    assert mounts[2] == Mount(
        "/docker/3f1a9c0e5d7b", "/sys/fs/cgroup/cpu,cpuacct", V1, frozenset({"cpu", "cpuacct"})
    )
    assert parse_mountinfo((FIXTURES / "cgroup2-limited/proc/self/mountinfo").read_text()) == [
        Mount("/", "/sys/fs/cgroup", V2, frozenset())
    ]


def test_mountinfo_unescapes_octal_and_rejects_truncated_lines() -> None:
    """A space in a mount point is written \\040; a line cut before its fs type is an error."""
    line = r"30 23 0:26 / /mnt/my\040cgroups rw,relatime - cgroup2 cgroup2 rw"
    assert parse_mountinfo(line)[0].mount_point == "/mnt/my cgroups"
    with pytest.raises(CollectorError, match="mountinfo: unexpected line"):
        parse_mountinfo("30 23 0:26 / /sys/fs/cgroup rw,relatime - cgroup2")


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("250000 100000\n", 2.5), ("max 100000\n", None), ("50000 100000", 0.5), ("100000 100000", 1)],
)
def test_cpu_max(text: str, cpus: float | None) -> None:
    """cpu.max is "quota period" in µs; "max" means no quota."""
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize("text", ["", "max", "250000", "abc 100000", "250000 0", "-1 100000"])
def test_cpu_max_malformed(text: str) -> None:
    """Empty, truncated and garbage cpu.max content is an error, not a silent no-limit."""
    with pytest.raises(CollectorError, match=r"cpu\.max"):
        parse_cpu_max(text)


def test_cfs_quota() -> None:
    """v1: -1 is no quota; quota / period is CPUs."""
    assert parse_cfs_quota("150000\n", "100000\n") == 1.5
    assert parse_cfs_quota("-1\n", "100000\n") is None
    with pytest.raises(CollectorError, match=r"cpu\.cfs_period_us"):
        parse_cfs_quota("150000", "")
    with pytest.raises(CollectorError, match="not a quota"):
        parse_cfs_quota("150000", "0")


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("4294967296\n", 4_294_967_296),
        ("max\n", None),
        ("9223372036854771712\n", None),  # v1's "unlimited" with 4 KiB pages
        ("9223372036854710272\n", None),  # ... with 64 KiB pages
        ("-1", None),
    ],
)
def test_memory_limit(text: str, limit: int | None) -> None:
    """max, -1 and the v1 sentinel are "no limit"."""
    assert parse_memory_limit(text) == limit


@pytest.mark.parametrize("text", ["", "4G", "12 34"])
def test_memory_limit_malformed(text: str) -> None:
    """A limit that is not a number is an error."""
    with pytest.raises(CollectorError, match="memory limit: expected a number"):
        parse_memory_limit(text)


def test_keyed_files() -> None:
    """memory.events and friends are "key value" lines."""
    text = "low 0\nhigh 0\nmax 37\noom 2\noom_kill 2\noom_group_kill 0\n"
    assert parse_keyed(text, "memory.events") == {
        "low": 0,
        "high": 0,
        "max": 37,
        "oom": 2,
        "oom_kill": 2,
        "oom_group_kill": 0,
    }
    with pytest.raises(CollectorError, match=r"memory\.events is empty"):
        parse_keyed("", "memory.events")
    with pytest.raises(CollectorError, match=r"memory\.stat: unexpected line 'anon'"):
        parse_keyed("anon\n", "memory.stat")
    with pytest.raises(CollectorError, match="unexpected line 'anon lots'"):
        parse_keyed("anon lots\n", "memory.stat")


def test_psi() -> None:
    """PSI's "some avg10" is a percentage of wall time; "full" is ignored."""
    text = "some avg10=12.50 avg60=8.02 avg300=3.11 total=9\nfull avg10=4.00 total=3\n"
    assert parse_psi_some_avg10(text) == 12.5
    for bad in ["", "full avg10=4.00", "some avg10=x avg60=1", "some avg60=1.0"]:
        with pytest.raises(CollectorError, match="no 'some avg10='"):
            parse_psi_some_avg10(bad)


# --- finding the cgroup -----------------------------------------------------------------------


def test_host_v2_scope() -> None:
    """A host process: its scope below the v2 mount."""
    scope_dir = FIXTURES / "host-plain/sys/fs/cgroup" / SCOPE.lstrip("/")
    cg = find_cgroup(HOST)
    assert (cg.version, cg.path) == (V2, SCOPE)
    assert cg.cpu == cg.cpuacct == cg.memory == cg.unified == scope_dir


def test_container_v2_with_cgroup_namespace() -> None:
    """Inside a cgroup namespace the path is "/" at the mount root: the mount point itself."""
    cg = find_cgroup(LIMITED)
    assert (cg.version, cg.path) == (V2, "/")
    assert cg.memory == cg.unified == FIXTURES / "cgroup2-limited/sys/fs/cgroup"


def test_container_v1_without_cgroup_namespace() -> None:
    """v1: the host path "/docker/<id>" is each mount's root, so the files sit at the mount."""
    cg = find_cgroup(V1_BOX)
    base = FIXTURES / "cgroup1/sys/fs/cgroup"
    assert (cg.version, cg.path) == (V1, "/docker/3f1a9c0e5d7b")
    assert cg.cpu == cg.cpuacct == base / "cpu,cpuacct"
    assert cg.memory == base / "memory"
    assert cg.unified is None


def test_hybrid_uses_v1_controllers_and_v2_for_psi(tmp_path: Path) -> None:
    """Hybrid: CPU and memory from v1, PSI from the unified hierarchy."""
    roots = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/job/7\n2:cpuacct:/\n1:cpu:/\n0::/job/7\n",
            "proc/self/mountinfo": (
                "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
                "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
                "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
                "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
            ),
            "sys/fs/cgroup/memory/job/7/": "",
            "sys/fs/cgroup/unified/job/7/cpu.pressure": "some avg10=3.00 total=1\n",
        },
    )
    cg = find_cgroup(roots)
    base = tmp_path / "sys/fs/cgroup"
    assert (cg.version, cg.path) == (HYBRID, "/job/7")
    assert (cg.cpu, cg.cpuacct, cg.memory) == (
        base / "cpu",
        base / "cpuacct",
        base / "memory/job/7",
    )
    assert cg.unified == base / "unified/job/7"
    assert read_pressure(cg, "cpu", roots) == 3.0


def test_container_v2_without_namespace_and_unknown_paths(tmp_path: Path) -> None:
    """A bind-mounted subtree, a path outside the mount, a missing directory: the mount point."""
    mount = "619 618 0:30 {root} /sys/fs/cgroup ro,relatime - cgroup2 cgroup rw\n"
    base = tmp_path / "sys/fs/cgroup"
    for cgroup, root in [("/docker/abc", "/docker/abc"), ("/../../x", "/"), ("/gone", "/")]:
        roots = write_tree(
            tmp_path,
            {
                "proc/self/cgroup": f"0::{cgroup}\n",
                "proc/self/mountinfo": mount.format(root=root),
                "sys/fs/cgroup/": "",
            },
        )
        assert find_cgroup(roots).memory == base, cgroup


def test_pid_cgroup_read_with_our_mount_table(tmp_path: Path) -> None:
    """/proc/<pid>/cgroup with our own mountinfo; theirs when ours is unreadable."""
    roots = write_tree(
        tmp_path,
        {
            "proc/123/cgroup": "0::/kubepods/pod1/ctr\n",
            "proc/123/mountinfo": "1 0 0:30 / /cgroup2 rw - cgroup2 cgroup2 rw\n",
            "sys/fs/cgroup/kubepods/pod1/ctr/": "",
        },
    )
    assert find_cgroup(roots, 123).memory == tmp_path / "cgroup2"  # theirs
    (tmp_path / "proc/self").mkdir()
    (tmp_path / "proc/self/mountinfo").write_text(
        "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    )
    assert find_cgroup(roots, 123).memory == tmp_path / "sys/fs/cgroup/kubepods/pod1/ctr"


def test_no_cgroup_at_all(tmp_path: Path) -> None:
    """No /proc/self/cgroup, or no cgroup mount: NoData, and describe says so."""
    with pytest.raises(NoData):
        find_cgroup(Roots.under(tmp_path))
    roots = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "proc/self/mountinfo": "22 28 0:21 / /proc rw - proc proc rw\n",
        },
    )
    with pytest.raises(NoData, match="no cgroup file system is mounted"):
        find_cgroup(roots)
    assert describe(roots) == [
        ("cgroup_version", "none"),
        ("cgroup_cpu_view", "host"),
        ("cgroup_memory_view", "host"),
    ]
    assert oom_kill_count(roots) is None


# --- reading ----------------------------------------------------------------------------------


def test_a_slice_limit_binds_the_service_below_it() -> None:
    """systemd: CPUQuota=400% and MemoryMax=8G on training.slice, none on the service in it.
    CPU and memory are read at the slice; PSI and the OOM verdict stay the service's own."""
    cg = find_cgroup(SLICE)
    base = FIXTURES / "slice-limited/sys/fs/cgroup"
    assert (cg.version, cg.path) == (V2, "/training.slice/train.service")
    assert cg.cpu == cg.cpuacct == cg.memory == base / "training.slice"
    assert cg.unified == base / "training.slice/train.service"
    assert (cg.cpu_limit_path, cg.memory_limit_path) == ("/training.slice", "/training.slice")
    assert (read_cpu_quota(cg), read_memory_limit(cg)) == (4.0, 8_589_934_592)
    assert read_cpu_stat(cg).nr_throttled == 1200
    assert read_pressure(cg, "cpu", SLICE) == 0.31
    assert oom_kill_count(SLICE) == 0  # the slice counts 1, a sibling's
    assert describe(SLICE)[2:] == [
        ("cgroup_cpu_quota", 4.0),
        ("cgroup_memory_limit_bytes", 8_589_934_592),
        ("cgroup_cpu_view", "cgroup"),
        ("cgroup_memory_view", "cgroup"),
        ("cgroup_cpu_limit_from", "/training.slice"),
        ("cgroup_memory_limit_from", "/training.slice"),
    ]


def test_the_lowest_limit_on_the_way_up_binds(tmp_path: Path) -> None:
    """Slurm (v2): 8 GiB on the job, 6 GiB on the step, none on the task: the step's binds;
    a lower limit of our own wins over every parent's."""
    job = "sys/fs/cgroup/system.slice/slurmstepd.scope/job_7"
    files = {
        "proc/self/cgroup": "0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n",
        "proc/self/mountinfo": "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        f"{job}/memory.max": "8589934592\n",
        f"{job}/cpu.max": "200000 100000\n",
        f"{job}/step_0/memory.max": "6442450944\n",
        f"{job}/step_0/cpu.max": "max 100000\n",
        f"{job}/step_0/user/memory.max": "max\n",
        f"{job}/step_0/user/task_0/memory.max": "max\n",
        f"{job}/step_0/user/task_0/cpu.max": "max 100000\n",
    }
    cg = find_cgroup(write_tree(tmp_path, files))
    assert cg.memory_limit_path == "/system.slice/slurmstepd.scope/job_7/step_0"
    assert cg.cpu_limit_path == "/system.slice/slurmstepd.scope/job_7"
    assert (read_memory_limit(cg), read_cpu_quota(cg)) == (6_442_450_944, 2.0)
    own = tmp_path / f"{job}/step_0/user/task_0"
    (own / "memory.max").write_text("1073741824\n")
    cg = find_cgroup(Roots.under(tmp_path))
    assert (cg.memory, cg.memory_limit_path, read_memory_limit(cg)) == (own, None, 1 << 30)
    assert find_cgroup(Roots.under(tmp_path), climb=False).cpu == own


def test_v1_parent_limit_binds(tmp_path: Path) -> None:
    """v1 without a container: a limit on the job's memory cgroup binds the task below it."""
    files = {
        "proc/self/cgroup": "5:memory:/slurm/uid_1/job_7/step_0/task_0\n",
        "proc/self/mountinfo": (
            "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        ),
        "sys/fs/cgroup/memory/slurm/memory.limit_in_bytes": "9223372036854771712\n",
        "sys/fs/cgroup/memory/slurm/uid_1/job_7/memory.limit_in_bytes": "2147483648\n",
        "sys/fs/cgroup/memory/slurm/uid_1/job_7/step_0/task_0/memory.limit_in_bytes": (
            "9223372036854771712\n"
        ),
    }
    cg = find_cgroup(write_tree(tmp_path, files))
    assert cg.memory_limit_path == "/slurm/uid_1/job_7"
    assert read_memory_limit(cg) == 2_147_483_648


def test_read_v2_limited() -> None:
    """cgroup2-limited: 2.5 CPUs, 4 GiB, counters in µs turned into ns."""
    cg = find_cgroup(LIMITED)
    assert read_cpu_quota(cg) == 2.5
    assert read_memory_limit(cg) == 4_294_967_296
    assert read_cpu_stat(cg) == CpuStat(7_200_000_000_000, 36000, 1800, 90_000_000_000)
    usage, stat = read_memory_usage(cg)
    assert (usage, stat["inactive_file"]) == (1_610_612_736, 201_326_592)
    assert working_set(cg, usage, stat) == 1_409_286_144
    assert read_memory_events(cg)["oom_kill"] == 2
    assert read_pressure(cg, "memory") == 0.42


def test_read_v1() -> None:
    """cgroup1: cfs quota, cpuacct.usage and throttled_time in ns, total_inactive_file."""
    cg = find_cgroup(V1_BOX)
    assert read_cpu_quota(cg) == 1.5
    assert read_memory_limit(cg) == 2_147_483_648
    assert read_cpu_stat(cg) == CpuStat(3_600_000_000_000, 12000, 600, 45_000_000_000)
    usage, stat = read_memory_usage(cg)
    assert working_set(cg, usage, stat) == 1_073_741_824 - 150_994_944
    assert read_memory_events(cg) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 3}
    with pytest.raises(NoData):
        read_pressure(cg, "cpu", V1_BOX)  # no unified hierarchy, no /proc/pressure here


def test_read_host_unlimited() -> None:
    """host-plain: "max" everywhere is no limit."""
    cg = find_cgroup(HOST)
    assert read_cpu_quota(cg) is None
    assert read_memory_limit(cg) is None
    assert read_cpu_stat(cg) == CpuStat(98_765_432_100_000, 0, 0, 0)


def test_oom_kill_count() -> None:
    """The run wrapper's question: how many OOM kills so far in this cgroup."""
    assert oom_kill_count(HOST) == 0
    assert oom_kill_count(LIMITED) == 2
    assert oom_kill_count(V1_BOX) == 3


def test_host_figures() -> None:
    """CPU count from /proc/stat's cpuN lines, MemTotal in bytes."""
    assert (host_cpus(HOST), host_memory(HOST)) == (8, 33_554_432_000)
    assert (host_cpus(LIMITED), host_memory(LIMITED)) == (16, 67_108_864_000)
    assert (host_cpus(V1_BOX), host_memory(V1_BOX)) == (4, 16_777_216_000)


def test_describe() -> None:
    """What logAdditionalSystemInfoList gets: version, path, limits and the view in use."""
    assert describe(LIMITED) == [
        ("cgroup_version", "v2"),
        ("cgroup_path", "/"),
        ("cgroup_cpu_quota", 2.5),
        ("cgroup_memory_limit_bytes", 4_294_967_296),
        ("cgroup_cpu_view", "cgroup"),
        ("cgroup_memory_view", "cgroup"),
    ]
    assert describe(V1_BOX) == [
        ("cgroup_version", "v1"),
        ("cgroup_path", "/docker/3f1a9c0e5d7b"),
        ("cgroup_cpu_quota", 1.5),
        ("cgroup_memory_limit_bytes", 2_147_483_648),
        ("cgroup_cpu_view", "cgroup"),
        ("cgroup_memory_view", "cgroup"),
    ]
    assert describe(HOST) == [
        ("cgroup_version", "v2"),
        ("cgroup_path", SCOPE),
        ("cgroup_cpu_quota", None),
        ("cgroup_memory_limit_bytes", None),
        ("cgroup_cpu_view", "host"),
        ("cgroup_memory_view", "host"),
    ]


def test_describe_limits_above_the_host_do_not_bind(tmp_path: Path) -> None:
    """A 32-CPU quota on 16 CPUs, or 1 TiB on a 62.5 GiB host, leaves the host view."""
    tree = tmp_path / "t"
    shutil.copytree(FIXTURES / "cgroup2-limited", tree)
    (tree / "sys/fs/cgroup/cpu.max").write_text("3200000 100000\n")
    (tree / "sys/fs/cgroup/memory.max").write_text(f"{1 << 40}\n")
    assert describe(Roots.under(tree))[2:] == [
        ("cgroup_cpu_quota", 32.0),
        ("cgroup_memory_limit_bytes", 1 << 40),
        ("cgroup_cpu_view", "host"),
        ("cgroup_memory_view", "host"),
    ]


def test_describe_on_this_machine() -> None:
    """On the real host, describe() answers with scalars only (whatever the layout)."""
    facts = describe()
    assert facts[0][0] == "cgroup_version"
    assert all(isinstance(v, str | int | float | type(None)) for _, v in facts)
