"""cpu.py: per-CPU utilisation, and the container's use of its quota on cgroup v1 and v2."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

from agent.collect.base import Roots, Sample
from agent.collect.cgroup import CpuStat
from agent.collect.cpu import CpuSampler, ProcStatCpuPercent, quota_percent, throttled_percent
from agent.collect.readings import CpuUsage
from agent.errors import CollectorError, NoData
from agent.lifecycle.samples import typed_bodies

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_800_000_000_000  # ms since the epoch


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class CpuPercent:
    """psutil.cpu_percent(percpu=True) as the sampler calls it: one list per call."""

    def __init__(self, *readings: Sequence[float]) -> None:
        self.readings = list(readings)
        self.calls = 0

    def __call__(self) -> list[float]:
        self.calls += 1
        return list(self.readings.pop(0))


def copy_tree(name: str, tmp_path: Path) -> Path:
    """A writable copy of a fixture tree, for counters that must move."""
    tree = tmp_path / name
    shutil.copytree(FIXTURES / name, tree)
    return tree


def write_cpu_stat_v2(
    tree: Path, usage_usec: int, periods: int, throttled: int, t_usec: int
) -> None:
    (tree / "sys/fs/cgroup/cpu.stat").write_text(
        f"usage_usec {usage_usec}\nuser_usec 0\nsystem_usec 0\nnr_periods {periods}\n"
        f"nr_throttled {throttled}\nthrottled_usec {t_usec}\nnr_bursts 0\nburst_usec 0\n"
    )


HOST_CPUS = [10.0, 20.0, 30.6, 40.0, 0.0, 100.0, 50.4, 49.6]


def test_host_plain_is_the_sdk_mean_and_per_cpu_ints() -> None:
    """No quota: the mean of psutil's percentages; the typed body rounds each CPU to an int."""
    readings = CpuPercent([0.0] * 8, HOST_CPUS)
    sampler = CpuSampler(
        roots=Roots.under(FIXTURES / "host-plain"), cpu_percent=readings, clock=Clock()
    )
    assert readings.calls == 1  # primed at construction
    sample = sampler.collect()
    assert sample == Sample(
        T0,
        {"sys.cpu.percent.avg": 300.6 / 8, "sys.cpu.pressure.some_avg10": 0.31},
        (CpuUsage((10, 20, 31, 40, 0, 100, 50, 50)),),
    )
    assert typed_bodies(sample) == {
        "add-cpu-metrics": {
            "cpuPercentUtilization": [10, 20, 31, 40, 0, 100, 50, 50],
            "timestamp": T0,
        }
    }


def test_per_core_metrics_are_one_based_two_digits() -> None:
    """per_core adds sys.cpu.percent.01 ... .08 with psutil's values."""
    sampler = CpuSampler(
        roots=Roots.under(FIXTURES / "host-plain"),
        cpu_percent=CpuPercent([0.0] * 8, HOST_CPUS),
        per_core=True,
        clock=Clock(),
    )
    metrics = sampler.collect().metrics
    assert [k for k in metrics if k.startswith("sys.cpu.percent.") and k[-1].isdigit()] == [
        f"sys.cpu.percent.{i:02d}" for i in range(1, 9)
    ]
    assert metrics["sys.cpu.percent.03"] == 30.6


def test_cgroup2_quota_usage_against_quota(tmp_path: Path) -> None:
    """2.5 CPUs for 30 s is 75 CPU-seconds; 37.5 used is 50 %, whatever the 16 host CPUs did."""
    tree = copy_tree("cgroup2-limited", tmp_path)
    clock = Clock()
    sampler = CpuSampler(
        roots=Roots.under(tree), cpu_percent=CpuPercent([0.0] * 16, [5.0] * 16), clock=clock
    )
    clock.now_ms += 30_000
    write_cpu_stat_v2(tree, 7_200_000_000 + 37_500_000, 36300, 1830, 90_000_000 + 1_500_000)
    sample = sampler.collect()
    assert sample.metrics == {
        "sys.cpu.percent.avg": 50.0,
        "sys.cpu.quota": 2.5,
        "sys.cpu.throttled_percent": 10.0,  # 30 of 300 periods
        "sys.cpu.throttled_s": 1.5,
        "sys.cpu.pressure.some_avg10": 12.5,
    }
    assert typed_bodies(sample)["add-cpu-metrics"]["cpuPercentUtilization"] == [5] * 16
    assert sample.timestamp_ms == T0 + 30_000


def test_cgroup2_first_sample_is_primed(tmp_path: Path) -> None:
    """The cgroup counters are read at construction: the first sample has a rate (here 0)."""
    tree = copy_tree("cgroup2-limited", tmp_path)
    clock = Clock()
    sampler = CpuSampler(
        roots=Roots.under(tree), cpu_percent=CpuPercent([0.0] * 16, [1.0] * 16), clock=clock
    )
    clock.now_ms += 10_000
    metrics = sampler.collect().metrics
    assert (metrics["sys.cpu.percent.avg"], metrics["sys.cpu.throttled_percent"]) == (0.0, 0.0)
    assert metrics["sys.cpu.throttled_s"] == 0.0


def test_cgroup2_rates_across_samples_and_the_cap(tmp_path: Path) -> None:
    """Each sample measures since the previous one; more than the quota reads 100."""
    tree = copy_tree("cgroup2-limited", tmp_path)
    clock = Clock()
    sampler = CpuSampler(
        roots=Roots.under(tree), cpu_percent=CpuPercent(*[[0.0] * 16] * 4), clock=clock
    )
    usage = 7_200_000_000
    for step_usage_s, expected in [(7.5, 25.0), (30.0, 100.0), (0.0, 0.0)]:
        clock.now_ms += 12_000
        usage += int(step_usage_s * 1_000_000)
        write_cpu_stat_v2(tree, usage, 36000, 1800, 90_000_000)
        assert sampler.collect().metrics["sys.cpu.percent.avg"] == expected


def test_cgroup2_counter_reset_skips_the_rate(tmp_path: Path) -> None:
    """A recreated cgroup (usage went down): no average this time, never a negative one."""
    tree = copy_tree("cgroup2-limited", tmp_path)
    clock = Clock()
    sampler = CpuSampler(
        roots=Roots.under(tree), cpu_percent=CpuPercent(*[[0.0] * 16] * 3), clock=clock
    )
    clock.now_ms += 10_000
    write_cpu_stat_v2(tree, 1_000, 10, 0, 0)
    metrics = sampler.collect().metrics
    assert "sys.cpu.percent.avg" not in metrics
    assert metrics["sys.cpu.quota"] == 2.5
    clock.now_ms += 10_000
    write_cpu_stat_v2(tree, 1_000 + 2_500_000, 110, 0, 0)  # 2.5 s of 25: 10 %
    assert sampler.collect().metrics["sys.cpu.percent.avg"] == 10.0


def test_cgroup1_quota_in_nanoseconds(tmp_path: Path) -> None:
    """v1: cpuacct.usage and throttled_time are ns; no PSI without the unified hierarchy."""
    tree = copy_tree("cgroup1", tmp_path)
    clock = Clock()
    sampler = CpuSampler(
        roots=Roots.under(tree), cpu_percent=CpuPercent([0.0] * 4, [80.0] * 4), clock=clock
    )
    clock.now_ms += 20_000
    cpu_dir = tree / "sys/fs/cgroup/cpu,cpuacct"
    (cpu_dir / "cpuacct.usage").write_text(f"{3_600_000_000_000 + 27_000_000_000}\n")  # 27 of 30
    (cpu_dir / "cpu.stat").write_text(
        "nr_periods 12200\nnr_throttled 650\nthrottled_time 47000000000\n"
    )
    sample = sampler.collect()
    assert sample.metrics == {
        "sys.cpu.percent.avg": 90.0,
        "sys.cpu.quota": 1.5,
        "sys.cpu.throttled_percent": 25.0,
        "sys.cpu.throttled_s": 2.0,
    }
    assert sample.unsupported == frozenset({"sys.cpu.pressure.some_avg10"})


def test_quota_at_or_above_the_host_keeps_the_host_view(tmp_path: Path) -> None:
    """2.5 CPUs of quota on a 2-CPU machine limits nothing: the SDK mean, no quota metrics."""
    tree = copy_tree("cgroup2-limited", tmp_path)
    sampler = CpuSampler(
        roots=Roots.under(tree), cpu_percent=CpuPercent([0.0, 0.0], [30.0, 50.0]), clock=Clock()
    )
    assert sampler.collect().metrics == {
        "sys.cpu.percent.avg": 40.0,
        "sys.cpu.pressure.some_avg10": 12.5,
    }


def test_no_cgroup_and_no_cpus(tmp_path: Path) -> None:
    """Without any cgroup the host view stands; psutil giving no CPUs is NoData."""
    sampler = CpuSampler(
        roots=Roots.under(tmp_path), cpu_percent=CpuPercent([0.0], [12.0], []), clock=Clock()
    )
    sample = sampler.collect()
    assert sample.metrics == {"sys.cpu.percent.avg": 12.0}
    assert sample.unsupported == frozenset({"sys.cpu.pressure.some_avg10"})
    with pytest.raises(NoData, match="no CPUs"):
        sampler.collect()


def test_rate_helpers() -> None:
    """The arithmetic on its own: no periods means no throttling."""
    a = CpuStat(0, 100, 10, 0)
    b = CpuStat(3_000_000_000, 200, 60, 0)
    assert quota_percent(a, b, 0.5, 10_000) == 60.0
    assert throttled_percent(a, b) == 50.0
    assert throttled_percent(a, a) == 0.0


def test_real_psutil_on_this_machine() -> None:
    """With the real psutil and /proc: values in range, one entry per logical CPU."""
    import psutil

    ticks = iter(range(0, 1000, 1))
    sampler = CpuSampler(monotonic=lambda: float(next(ticks)))  # each reading 1 s after the last
    sample = sampler.collect()
    per_cpu = typed_bodies(sample)["add-cpu-metrics"]["cpuPercentUtilization"]
    assert isinstance(per_cpu, list)
    assert len(per_cpu) == psutil.cpu_count()
    assert all(isinstance(p, int) and 0 <= p <= 100 for p in per_cpu)
    if "sys.cpu.percent.avg" in sample.metrics:
        assert 0 <= sample.metrics["sys.cpu.percent.avg"] <= 100


def test_quota_set_while_running(tmp_path: Path) -> None:
    """`docker update --cpus` mid-run: the first sample under it has no average, the next has."""
    tree = copy_tree("cgroup2-limited", tmp_path)
    (tree / "sys/fs/cgroup/cpu.max").write_text("max 100000\n")
    clock = Clock()
    sampler = CpuSampler(
        roots=Roots.under(tree), cpu_percent=CpuPercent(*[[50.0] * 16] * 4), clock=clock
    )
    clock.now_ms += 10_000
    assert sampler.collect().metrics["sys.cpu.percent.avg"] == 50.0  # host view
    (tree / "sys/fs/cgroup/cpu.max").write_text("200000 100000\n")
    clock.now_ms += 10_000
    metrics = sampler.collect().metrics
    assert "sys.cpu.percent.avg" not in metrics
    assert metrics["sys.cpu.quota"] == 2.0
    clock.now_ms += 10_000
    write_cpu_stat_v2(tree, 7_200_000_000 + 5_000_000, 36000, 1800, 90_000_000)
    assert sampler.collect().metrics["sys.cpu.percent.avg"] == 25.0  # 5 s of 2 x 10 s


def test_a_window_under_half_a_second_sends_nothing() -> None:
    """psutil's reading right after another covers no time and says 0 %: it is not sent; the
    next sample, half a second on, covers the whole window (issue: no fake 0 %)."""
    now = [100.0]
    sampler = CpuSampler(roots=Roots.under(FIXTURES / "host-plain"), monotonic=lambda: now[0])
    now[0] += 0.1
    with pytest.raises(NoData, match=r"the CPU window is 0\.10 s, under 0\.5 s"):
        sampler.collect()
    now[0] += 0.5
    sample = sampler.collect()
    assert "sys.cpu.percent.avg" in sample.metrics
    with pytest.raises(NoData):  # and straight after, again nothing
        sampler.collect()


def _stat(lines: list[str]) -> str:
    return "cpu  1 2 3 4 5 6 7 8 9 10\n" + "".join(f"{line}\n" for line in lines) + "intr 1 2\n"


STAT_BEFORE = [
    "cpu0 100 5 50 800 20 1 2 0 0 0",
    "cpu1 300 0 100 500 0 0 0 10 30 4",
    "cpu2 10 0 10 100 0 0 0 0 0 0",
]
STAT_AFTER = [
    "cpu0 160 5 70 900 40 1 4 0 0 0",  # busy 82 of 202 ticks
    "cpu1 400 0 150 500 0 0 0 20 60 6",  # guest 30+2 inside user/nice: not counted twice
    "cpu2 10 0 10 100 0 0 0 0 0 0",  # nothing happened: 0.0, not a division by zero
]


def test_proc_stat_reader_gives_psutils_figures(tmp_path: Path) -> None:
    """The same two /proc/stat texts give exactly what psutil.cpu_percent(percpu=True) gives
    (psutil pointed at the fixture through its PROCFS_PATH)."""
    proc = tmp_path / "proc"
    proc.mkdir()
    stat = proc / "stat"
    stat.write_text(_stat(STAT_BEFORE))
    ours = ProcStatCpuPercent(proc)
    assert ours() == [0.0, 0.0, 0.0]  # nothing to compare with yet
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(proc)
    try:
        psutil.cpu_percent(interval=None, percpu=True)  # psutil's own first reading
        stat.write_text(_stat(STAT_AFTER))
        theirs = psutil.cpu_percent(interval=None, percpu=True)
    finally:
        psutil.PROCFS_PATH = saved
    assert ours() == theirs == [40.6, 100.0, 0.0]


def test_proc_stat_reader_matches_cpus_by_name(tmp_path: Path) -> None:
    """A CPU going offline drops out without shifting the others; one coming back reads 0.0
    once (nothing to compare it with)."""
    proc = tmp_path / "proc"
    proc.mkdir()
    stat = proc / "stat"
    stat.write_text(_stat(STAT_BEFORE))
    ours = ProcStatCpuPercent(proc)
    ours()
    stat.write_text(_stat([STAT_AFTER[0], STAT_AFTER[2]]))
    assert ours() == [40.6, 0.0]
    stat.write_text(_stat([STAT_AFTER[0], STAT_AFTER[1], STAT_AFTER[2]]))
    assert ours() == [0.0, 0.0, 0.0]


def test_proc_stat_reader_names_an_unreadable_file(tmp_path: Path) -> None:
    """No /proc/stat, or a damaged cpu line: a CollectorError naming the file."""
    with pytest.raises(CollectorError, match="stat"):
        ProcStatCpuPercent(tmp_path)()
    (tmp_path / "stat").write_text(_stat(["cpu0 1 2 x 4 5 6 7 8 9 10"]))
    with pytest.raises(CollectorError, match="unreadable line"):
        ProcStatCpuPercent(tmp_path)()
