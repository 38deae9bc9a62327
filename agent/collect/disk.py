"""Disk: usage of one file system and read/write bytes per second over all disks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import psutil

from agent.collect.base import Clock, Number, Sample
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


def _host_disk_counters() -> DiskCounters | None:
    return psutil.disk_io_counters()


class DiskSampler:
    """Sample sys.disk.root.* for one path and sys.disk.read_bps / write_bps."""

    name = "disk"

    def __init__(
        self,
        *,
        path: Path = Path("/"),
        disk_usage: Callable[[str], DiskUsage] = psutil.disk_usage,
        disk_io_counters: Callable[[], DiskCounters | None] = _host_disk_counters,
        clock: Clock = now_ms,
    ) -> None:
        self._path = str(path)
        self._usage = disk_usage
        self._counters = disk_io_counters
        self._clock = clock
        self._prev: tuple[int, tuple[int, int]] | None = None
        self._prev = self._read_io(clock())  # priming: the first rate needs a reading before it

    def _read_io(self, stamp: int) -> tuple[int, tuple[int, int]] | None:
        try:
            io = self._counters()
        except (OSError, RuntimeError):  # RuntimeError: psutil found no /proc/diskstats
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
