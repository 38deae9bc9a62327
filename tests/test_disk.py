"""disk.py: usage of the configured path and read/write bytes per second."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from agent.collect.base import Sample
from agent.collect.disk import DiskSampler
from agent.errors import NoData

T0 = 1_800_000_000_000
Usage = namedtuple("Usage", "total used free percent")  # psutil's sdiskusage
Io = namedtuple("Io", "read_bytes write_bytes")


class Clock:
    def __init__(self) -> None:
        self.now_ms = T0

    def __call__(self) -> int:
        return self.now_ms


def usage_of(path: str) -> Usage:
    assert path == "/data"  # the configured path is what gets asked about
    return Usage(1_000_000_000_000, 400_000_000_000, 600_000_000_000, 40.0)


def test_usage_and_rates_first_primed() -> None:
    """sys.disk.root.* from disk_usage(path); IO rates from the second reading on."""
    readings = [Io(1_000_000, 2_000_000), Io(4_000_000, 2_500_000)]
    clock = Clock()
    sampler = DiskSampler(
        path=Path("/data"),
        disk_usage=usage_of,
        disk_io_counters=lambda: readings.pop(0),
        clock=clock,
    )
    clock.now_ms += 30_000
    assert sampler.collect() == Sample(
        T0 + 30_000,
        {
            "sys.disk.root.used": 400_000_000_000,
            "sys.disk.root.percent.used": 40.0,
            "sys.disk.read_bps": 100_000.0,
            "sys.disk.write_bps": 16_666.7,
        },
    )


def test_reset_skips_the_rates_but_keeps_usage() -> None:
    """A smaller counter (a disk detached): usage is sent, the rates are not."""
    readings = [Io(5_000, 5_000), Io(1_000, 9_000), Io(2_000, 10_000)]
    clock = Clock()
    sampler = DiskSampler(
        path=Path("/data"),
        disk_usage=usage_of,
        disk_io_counters=lambda: readings.pop(0),
        clock=clock,
    )
    clock.now_ms += 1_000
    assert set(sampler.collect().metrics) == {"sys.disk.root.used", "sys.disk.root.percent.used"}
    clock.now_ms += 1_000
    metrics = sampler.collect().metrics
    assert (metrics["sys.disk.read_bps"], metrics["sys.disk.write_bps"]) == (1_000.0, 1_000.0)


def test_no_block_devices() -> None:
    """psutil's None (no disks in this container): rates reported unsupported, usage sent."""
    sampler = DiskSampler(path=Path("/data"), disk_usage=usage_of, disk_io_counters=lambda: None)
    sample = sampler.collect()
    assert set(sample.metrics) == {"sys.disk.root.used", "sys.disk.root.percent.used"}
    assert sample.unsupported == frozenset({"sys.disk.read_bps", "sys.disk.write_bps"})


def test_missing_path_names_the_setting(tmp_path: Path) -> None:
    """The real psutil on a path that does not exist: NoData telling which setting to fix."""
    missing = tmp_path / "nowhere"
    sampler = DiskSampler(path=missing)
    with pytest.raises(NoData, match=r"nowhere does not exist; set \[sampling\] disk_path"):
        sampler.collect()


def test_real_psutil(tmp_path: Path) -> None:
    """The real psutil on a real directory: usage as psutil reports it."""
    sampler = DiskSampler(path=tmp_path)
    metrics = sampler.collect().metrics
    assert metrics["sys.disk.root.used"] > 0
    assert metrics["sys.disk.root.percent.used"] == psutil.disk_usage(str(tmp_path)).percent
    assert 0 <= metrics["sys.disk.root.percent.used"] <= 100
