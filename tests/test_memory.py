"""memory.py: the host's RAM with SDK semantics, a cgroup limit's working set, OOM kills."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.collect.base import HealthEvent, Roots, Sample
from agent.collect.memory import Memory, MemorySampler, parse_meminfo
from agent.collect.readings import RamUsage
from agent.errors import CollectorError, NoData
from agent.lifecycle.samples import typed_bodies

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_800_000_000_000


def sampler_on(tree: Path) -> MemorySampler:
    return MemorySampler(roots=Roots.under(tree), clock=lambda: T0)


def test_parse_meminfo_uses_memavailable() -> None:
    """used = total - available (not psutil's used); percent rounded as psutil rounds it."""
    text = "MemTotal:  1000 kB\nMemFree:  100 kB\nMemAvailable:  333 kB\nCached: 50 kB\n"
    assert parse_meminfo(text) == Memory(1_024_000, 683_008, 340_992, 66.7)


def test_parse_meminfo_without_memavailable() -> None:
    """Kernels before 3.14: free + buffers + cached."""
    text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 130 kB\n"
    assert parse_meminfo(text) == Memory(1_024_000, 768_000, 256_000, 75.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no MemTotal"),
        ("MemFree: 1 kB\n", "no MemTotal"),
        ("MemTotal:\n", "unexpected line 'MemTotal:'"),
        ("MemTotal: lots kB\n", "unexpected line"),
        ("MemTotal: 0 kB\n", "no MemTotal"),
    ],
)
def test_parse_meminfo_malformed(text: str, match: str) -> None:
    """Empty, truncated and garbage meminfo are errors naming the file."""
    with pytest.raises(CollectorError, match=match):
        parse_meminfo(text)


def test_host_plain() -> None:
    """No limit on our scope: the host's figures, plus the scope's OOM count and PSI."""
    sample = sampler_on(FIXTURES / "host-plain").collect()
    assert typed_bodies(sample) == {
        "add-ram-metrics": {"totalRam": 33_554_432_000, "usedRam": 8_388_608_000, "timestamp": T0}
    }
    assert sample == Sample(
        T0,
        {
            "sys.ram.total": 33_554_432_000,
            "sys.ram.used": 8_388_608_000,
            "sys.ram.available": 25_165_824_000,
            "sys.ram.percent.used": 25.0,
            "sys.ram.oom_kills": 0,
            "sys.ram.pressure.some_avg10": 0.0,
        },
        (RamUsage(33_554_432_000, 8_388_608_000),),
    )


def test_cgroup2_limit_replaces_the_host() -> None:
    """Inside a 4 GiB limit, total is the limit and used is the working set."""
    sample = sampler_on(FIXTURES / "cgroup2-limited").collect()
    assert sample.metrics == {
        "sys.ram.total": 4_294_967_296,
        "sys.ram.used": 1_409_286_144,  # memory.current - inactive_file
        "sys.ram.available": 2_885_681_152,
        "sys.ram.percent.used": 32.8,
        "sys.ram.oom_kills": 2,
        "sys.ram.pressure.some_avg10": 0.42,
    }
    assert typed_bodies(sample) == {
        "add-ram-metrics": {"totalRam": 4_294_967_296, "usedRam": 1_409_286_144, "timestamp": T0}
    }
    assert sample.events == ()  # the 2 kills happened before we started


def test_a_parent_slice_limit_replaces_the_host() -> None:
    """MemoryMax= on the slice above us: the slice's working set against its 8 GiB."""
    sample = sampler_on(FIXTURES / "slice-limited").collect()
    assert sample.metrics == {
        "sys.ram.total": 8_589_934_592,
        "sys.ram.used": 2_684_354_560,  # the slice's memory.current - inactive_file
        "sys.ram.available": 5_905_580_032,
        "sys.ram.percent.used": 31.2,
        "sys.ram.oom_kills": 1,  # the slice's: a kill anywhere in it counts against its limit
        "sys.ram.pressure.some_avg10": 0.0,  # our own cgroup's PSI
    }


def test_cgroup1_limit() -> None:
    """v1: usage_in_bytes - total_inactive_file against limit_in_bytes; OOM from oom_control."""
    sample = sampler_on(FIXTURES / "cgroup1").collect()
    assert sample.metrics == {
        "sys.ram.total": 2_147_483_648,
        "sys.ram.used": 922_746_880,
        "sys.ram.available": 1_224_736_768,
        "sys.ram.percent.used": 43.0,
        "sys.ram.oom_kills": 3,
    }
    assert sample.unsupported == frozenset({"sys.ram.pressure.some_avg10"})


def test_new_oom_kills_are_health_events(tmp_path: Path) -> None:
    """Kills after the sampler started become one event per sample with the count."""
    tree = tmp_path / "t"
    shutil.copytree(FIXTURES / "cgroup2-limited", tree)
    sampler = sampler_on(tree)
    (tree / "sys/fs/cgroup/memory.events").write_text("max 40\noom 4\noom_kill 4\n")
    sample = sampler.collect()
    assert sample.metrics["sys.ram.oom_kills"] == 4
    assert sample.events == (
        HealthEvent(
            kind="oom_kill",
            message="OOM killer ended 2 process(es) in cgroup / (4 so far); "
            "raise the memory limit or use less memory",
            timestamp_ms=T0,
            data={"count": 2, "total": 4},
        ),
    )
    assert sampler.collect().events == ()  # counted once


def test_limit_above_the_host_keeps_the_host_view(tmp_path: Path) -> None:
    """A limit larger than MemTotal limits nothing: the host's figures."""
    tree = tmp_path / "t"
    shutil.copytree(FIXTURES / "cgroup2-limited", tree)
    (tree / "sys/fs/cgroup/memory.max").write_text(f"{1 << 40}\n")
    metrics = sampler_on(tree).collect().metrics
    assert (metrics["sys.ram.total"], metrics["sys.ram.used"]) == (67_108_864_000, 15_908_864_000)


def test_usage_above_the_limit_never_goes_negative(tmp_path: Path) -> None:
    """A working set momentarily over the limit reads 100 % and 0 available."""
    tree = tmp_path / "t"
    shutil.copytree(FIXTURES / "cgroup2-limited", tree)
    (tree / "sys/fs/cgroup/memory.current").write_text("5000000000\n")
    metrics = sampler_on(tree).collect().metrics
    assert (metrics["sys.ram.used"], metrics["sys.ram.available"]) == (4_294_967_296, 0)
    assert metrics["sys.ram.percent.used"] == 100.0


def test_missing_meminfo_is_nodata(tmp_path: Path) -> None:
    """Not Linux (or /proc not mounted): NoData, so the scheduler logs it at DEBUG."""
    with pytest.raises(NoData):
        sampler_on(tmp_path).collect()


def test_real_machine() -> None:
    """On this machine: used + available = total, 0 <= percent <= 100."""
    m = MemorySampler().collect().metrics
    assert m["sys.ram.used"] + m["sys.ram.available"] == m["sys.ram.total"]
    assert 0 <= m["sys.ram.percent.used"] <= 100
