"""Disk: usage of one file system and read/write bytes per second over all disks."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from agent.collect.base import Clock, Number, Roots, Sample, read_kept
from agent.collect.network import byte_rates
from agent.errors import CollectorError, NoData
from agent.message import now_ms


class DiskUsage(Protocol):
    """What psutil.disk_usage() gives that we use."""

    @property
    def used(self) -> int: ...  # noqa: D102
    @property
    def percent(self) -> float: ...  # noqa: D102


class DiskCounters(Protocol):
    """What psutil.disk_io_counters() gives that we use."""

    @property
    def read_bytes(self) -> int: ...  # noqa: D102
    @property
    def write_bytes(self) -> int: ...  # noqa: D102


_IO_RATES = frozenset({"sys.disk.read_bps", "sys.disk.write_bps"})
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size


@dataclass(frozen=True)
class IoTotals:
    """Bytes read and written over all whole disks since boot."""

    read_bytes: int
    write_bytes: int


def _diskstats_line(fields: list[str]) -> tuple[str, int, int] | None:
    """(name, sectors read, sectors written) of one /proc/diskstats line, psutil's layouts."""
    n = len(fields)
    if n == 14 or n >= 18:  # Linux 2.6+ whole device (4.18 and 5.5 added fields)
        return fields[2], int(fields[5]), int(fields[9])
    if n == 7:  # Linux 2.6+ partition
        return fields[2], int(fields[4]), int(fields[6])
    if n == 15:  # Linux 2.4
        return fields[3], int(fields[5]), int(fields[9])
    return None


class DiskstatsReader:
    """Read and write bytes over all whole disks, summed as psutil.disk_io_counters() does.

    /proc/diskstats stays open and is parsed for the two sums; which names are whole
    disks (those /sys/block lists, psutil's rule: partitions would count twice) is
    looked up only when the set of devices changes. psutil reopens the file and stats
    /sys/block/<name> for every device on every call.
    """

    def __init__(self, roots: Roots = Roots()) -> None:
        self._path = roots.proc / "diskstats"
        self._sys_block = roots.sys / "block"
        self._names: tuple[str, ...] = ()
        self._disks: frozenset[str] = frozenset()

    def __call__(self) -> IoTotals | None:
        """Return the sums now; None when there are no disks or no /proc/diskstats."""
        try:
            text = read_kept(self._path)
        except NoData:
            return None
        rows = []
        for line in text.splitlines():
            try:
                row = _diskstats_line(line.split())
            except ValueError:
                row = None
            if row is not None:
                rows.append(row)
        names = tuple(name for name, _, _ in rows)
        if names != self._names:
            self._names = names
            try:
                listed = set(os.listdir(self._sys_block))
            except OSError:
                listed = set()
            self._disks = frozenset(n for n in names if n.replace("/", "!") in listed)
        disks = [(r, w) for name, r, w in rows if name in self._disks]
        if not disks:
            return None
        return IoTotals(
            sum(r for r, _ in disks) * SECTOR_BYTES, sum(w for _, w in disks) * SECTOR_BYTES
        )


class DiskSampler:
    """Sample sys.disk.root.* for one path and sys.disk.read_bps / write_bps."""

    name = "disk"

    def __init__(
        self,
        *,
        path: Path = Path("/"),
        disk_usage: Callable[[str], DiskUsage] = psutil.disk_usage,
        disk_io_counters: Callable[[], DiskCounters | None] | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self._path = str(path)
        self._usage = disk_usage
        self._counters = DiskstatsReader() if disk_io_counters is None else disk_io_counters
        self._clock = clock
        self._prev: tuple[int, tuple[int, int]] | None = None
        self._prev = self._read_io(clock())  # priming: the first rate needs a reading before it

    def _read_io(self, stamp: int) -> tuple[int, tuple[int, int]] | None:
        try:
            io = self._counters()
        except (OSError, RuntimeError, CollectorError):  # a reader given by a caller may raise
            return None
        return None if io is None else (stamp, (io.read_bytes, io.write_bytes))

    def collect(self) -> Sample:
        """Read usage now, and the IO rates since the previous reading when there is one."""
        stamp = self._clock()
        try:
            usage = self._usage(self._path)
        except FileNotFoundError:
            raise NoData(
                f"disk path {self._path} does not exist; set [sampling] disk_path"
            ) from None
        except OSError as exc:
            raise CollectorError(f"cannot stat {self._path}: {exc.strerror or exc}") from None
        metrics: dict[str, Number] = {
            "sys.disk.root.used": usage.used,
            "sys.disk.root.percent.used": usage.percent,
        }
        prev, now = self._prev, self._read_io(stamp)
        if prev is None or now is None or stamp != prev[0]:
            self._prev = now  # within the same ms, the earlier reading stays the baseline
        rates = byte_rates(prev[1], now[1], stamp - prev[0]) if prev and now else None
        if rates is not None:  # wire §3.7 gives bytes/s, no type: floats, one decimal
            metrics["sys.disk.read_bps"] = round(rates[0], 1)
            metrics["sys.disk.write_bps"] = round(rates[1], 1)
        unsupported = _IO_RATES if now is None else frozenset()  # no block devices to count
        return Sample(stamp, metrics, unsupported=unsupported)

    def close(self) -> None:
        """Nothing to release."""
