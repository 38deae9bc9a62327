"""disk.py: usage of the configured path and read/write bytes per second."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from agent.collect.base import Roots, Sample
from agent.collect.disk import DiskSampler, DiskstatsReader
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


def _tree(tmp_path: Path, diskstats: str, block: list[str]) -> Roots:
    roots = Roots.under(tmp_path)
    roots.proc.mkdir(parents=True, exist_ok=True)
    (roots.proc / "diskstats").write_text(diskstats)
    for name in block:
        (roots.sys / "block" / name).mkdir(parents=True, exist_ok=True)
    return roots


DISKSTATS = """\
 259       0 nvme0n1 100 0 2000 0 50 0 4000 0 0 0 0 0 0 0 0 0 0
 259       1 nvme0n1p1 90 0 1800 0 40 0 3000 0 0 0 0 0 0 0 0 0 0
   8       0 sda 10 0 200 0 5 0 400 0 0 0 0
   8       1 sda1 10 200 5 400
 104       0 cciss/c0d0 1 0 10 0 1 0 20 0 0 0 0 0 0 0 0
 garbage line
"""


def test_diskstats_sums_whole_disks_in_bytes(tmp_path: Path) -> None:
    """Whole disks only (those /sys/block lists, a slash spelled '!'), sectors of 512 bytes;
    partitions and lines of no known layout are left out."""
    roots = _tree(tmp_path, DISKSTATS, ["nvme0n1", "sda", "cciss!c0d0"])
    totals = DiskstatsReader(roots)()
    assert totals is not None
    assert (totals.read_bytes, totals.write_bytes) == (
        (2000 + 200 + 10) * 512,
        (4000 + 400 + 20) * 512,
    )


def test_diskstats_sees_a_disk_attached_later(tmp_path: Path) -> None:
    """A new device in /proc/diskstats is looked up in /sys/block when it appears."""
    roots = _tree(tmp_path, DISKSTATS, ["nvme0n1", "sda", "cciss!c0d0"])
    reader = DiskstatsReader(roots)
    before = reader()
    (roots.sys / "block" / "sdb").mkdir()
    (roots.proc / "diskstats").write_text(
        DISKSTATS + "   8      16 sdb 1 0 1000 0 1 0 3000 0 0 0 0 0 0 0 0\n"
    )
    after = reader()
    assert before is not None and after is not None
    assert after.read_bytes - before.read_bytes == 1000 * 512
    assert after.write_bytes - before.write_bytes == 3000 * 512


def test_diskstats_without_the_file_or_disks_is_none(tmp_path: Path) -> None:
    """No /proc/diskstats, or only partitions: nothing to count (the rates are unsupported)."""
    assert DiskstatsReader(Roots.under(tmp_path))() is None
    roots = _tree(tmp_path, "   8       1 sda1 10 200 5 400\n", [])
    assert DiskstatsReader(roots)() is None


def test_diskstats_agrees_with_psutil_on_this_host() -> None:
    """On the real /proc and /sys the sums are psutil.disk_io_counters()' (read between two
    of ours, so counters moving meanwhile still bracket it)."""
    reader = DiskstatsReader()
    first, theirs, last = reader(), psutil.disk_io_counters(), reader()
    if theirs is None:
        assert first is None and last is None
        return
    assert first is not None and last is not None
    assert first.read_bytes <= theirs.read_bytes <= last.read_bytes
    assert first.write_bytes <= theirs.write_bytes <= last.write_bytes
