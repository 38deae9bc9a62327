"""CPU: per-CPU utilisation for Add CPU Metrics and sys.cpu.*, measured against a cgroup quota.

On a host (or in a container without a binding quota) ``sys.cpu.percent.avg``
is the mean of psutil's per-CPU percentages, as the SDK computes it. Under a
CPU quota below the host's CPU count it is the cgroup's CPU time over the
quota's capacity in the same wall time (capped at 100), so a container
using all of its 2.5 CPUs reads 100 % however idle the host is; the quota,
throttling and pressure come along as ``sys.cpu.quota``,
``sys.cpu.throttled_percent``, ``sys.cpu.throttled_s`` and
``sys.cpu.pressure.some_avg10``.

``cpuPercentUtilization`` stays the host's per-CPU list, even under a quota: a
quota is a share of time on any CPU, not a set of CPUs, and cgroup v2 does not
count usage per CPU, so no per-CPU figure of the container exists to send;
the host's list is what psutil measures and what the endpoint describes
("one entry per core"), and the container's own figure is in the average.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.collect.base import Clock, Number, Roots, Sample, read_kept
from agent.collect.cgroup import (
    Cgroup,
    CpuStat,
    cpu_limit_binds,
    find_cgroup_or_none,
    read_cpu_quota,
    read_cpu_stat,
    read_pressure,
)
from agent.collect.readings import CpuUsage
from agent.errors import CollectorError, NoData
from agent.message import now_ms

CpuPercent = Callable[[], Sequence[float]]
PRESSURE = "sys.cpu.pressure.some_avg10"
_CGROUP_RATES = ("sys.cpu.percent.avg", "sys.cpu.throttled_percent", "sys.cpu.throttled_s")


def _percent(prev: Sequence[int], now: Sequence[int]) -> float:
    """psutil's per-CPU formula on tick deltas: busy over total, guest time not counted twice
    (the kernel counts it in user and nice too), idle and iowait not busy, one decimal."""
    deltas = [max(0, b - a) for a, b in zip(prev, now, strict=False)]
    n = len(deltas)
    total = sum(deltas) - (deltas[8] if n > 8 else 0) - (deltas[9] if n > 9 else 0)
    busy = total - deltas[3] - (deltas[4] if n > 4 else 0)
    return round(busy / total * 100, 1) if total > 0 else 0.0


class ProcStatCpuPercent:
    """Per-CPU utilisation since the previous call, as psutil.cpu_percent(percpu=True) gives it.

    /proc/stat stays open and only its cpuN lines are parsed, in integer ticks; psutil
    reopens the file, converts every field to seconds and builds a tuple per CPU, which
    was a tenth of an idle agent's CPU at 1 s. CPUs are matched by name, so one going
    offline does not shift the others' figures. The first call has nothing to compare
    with and reads 0.0 for each CPU (the sampler primes with it).
    """

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._path = proc / "stat"
        self._prev: dict[str, list[int]] = {}

    def _read(self) -> dict[str, list[int]]:
        try:
            text = read_kept(self._path)
        except NoData as exc:
            raise CollectorError(str(exc)) from None
        rows: dict[str, list[int]] = {}
        for line in text.splitlines()[1:]:  # the first line sums every CPU
            if not line.startswith("cpu"):
                break  # the cpuN lines come first, together
            name, *fields = line.split()[:11]  # psutil's ten fields, user .. guest_nice
            try:
                rows[name] = [int(f) for f in fields]
            except ValueError:
                raise CollectorError(f"{self._path}: unreadable line {line[:60]!r}") from None
        return rows

    def __call__(self) -> list[float]:
        """Return each CPU's busy percentage since the previous call, in /proc/stat's order."""
        now = self._read()
        prev, self._prev = self._prev, now
        return [_percent(prev[name], ticks) if name in prev else 0.0 for name, ticks in now.items()]


def quota_percent(prev: CpuStat, now: CpuStat, quota_cpus: float, wall_ms: int) -> float:
    """Return the cgroup's CPU use as a percentage of its quota over `wall_ms`, capped at 100."""
    used_ns = now.usage_ns - prev.usage_ns
    return round(min(100.0, used_ns / (quota_cpus * wall_ms * 1e6) * 100), 2)


def throttled_percent(prev: CpuStat, now: CpuStat) -> float:
    """Return the share of CFS periods that were throttled between two readings (0 when none)."""
    periods = now.nr_periods - prev.nr_periods
    throttled = now.nr_throttled - prev.nr_throttled
    return round(min(100.0, throttled / periods * 100), 2) if periods > 0 else 0.0


def _read_stat(cg: Cgroup, stamp: int) -> tuple[int, CpuStat] | None:
    try:
        return stamp, read_cpu_stat(cg)
    except NoData:
        return None


MIN_WINDOW_S = 0.5  # the shortest span a CPU figure may cover


class CpuSampler:
    """Sample CPU utilisation: the host's per CPU, and the container's against its quota."""

    name = "cpu"

    def __init__(
        self,
        *,
        roots: Roots = Roots(),
        pid: int | None = None,
        cpu_percent: CpuPercent | None = None,
        per_core: bool = False,
        clock: Clock = now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # The default reads /proc/stat as psutil would (per sampler: no state shared).
        windowed = cpu_percent is None
        if cpu_percent is None:
            cpu_percent = ProcStatCpuPercent(roots.proc)
        self._cpu_percent = cpu_percent
        self._monotonic = monotonic
        self._per_core = per_core
        self._clock = clock
        self._roots = roots
        self._cgroup = find_cgroup_or_none(roots, pid)
        # Priming: psutil measures since its previous call, so the first real sample would
        # otherwise cover nothing (the SDK's first sample is a meaningless 0.0); the cgroup's
        # counters likewise, read now when a quota binds.
        try:
            host_cpus = len(cpu_percent())
        except CollectorError:  # collect() raises it again, on schedule, for the log
            host_cpus = os.cpu_count() or 1
        self._read_at = monotonic()  # when the reader's window began
        # The window rule is psutil's: "since its previous call". A reader given by a test
        # (fixture values) has no window, and is read as asked.
        self._windowed = windowed
        self._prev: tuple[int, CpuStat] | None = None
        cg = self._cgroup
        # A cgroup file that cannot be read now must not stop the agent from starting:
        # collect() raises the same CollectorError on schedule, and the other samplers go on.
        with contextlib.suppress(CollectorError):
            if cg is not None and cpu_limit_binds(read_cpu_quota(cg), host_cpus):
                self._prev = _read_stat(cg, clock())

    def collect(self) -> Sample:
        """Read utilisation since the previous sample."""
        stamp = self._clock()
        window_s = self._monotonic() - self._read_at
        if self._windowed and window_s < MIN_WINDOW_S:
            # A reading right after another (the stop's last sample, a job rescheduled by the
            # server's answer) covers almost no time: psutil would say 0.0 % however busy the
            # machine is. Nothing is sent; the next sample covers the whole window.
            raise NoData(f"the CPU window is {window_s:.2f} s, under {MIN_WINDOW_S} s")
        percents = self._cpu_percent()
        self._read_at = self._monotonic()
        if not percents:
            raise NoData("/proc/stat lists no CPUs")
        metrics: dict[str, Number] = {"sys.cpu.percent.avg": sum(percents) / len(percents)}
        if self._per_core:
            for i, value in enumerate(percents, start=1):
                metrics[f"sys.cpu.percent.{i:02d}"] = value
        unsupported: set[str] = set()
        cg = self._cgroup
        if cg is not None:
            quota = read_cpu_quota(cg)
            if quota is not None and cpu_limit_binds(quota, len(percents)):
                prev, self._prev = self._prev, _read_stat(cg, stamp)
                metrics["sys.cpu.quota"] = quota
                self._quota_rates(metrics, unsupported, quota, prev, self._prev)
            else:
                self._prev = None  # counters are read only under a quota (a new one: next time)
        try:
            metrics[PRESSURE] = read_pressure(cg, "cpu", self._roots)
        except CollectorError:
            unsupported.add(PRESSURE)  # no PSI on this kernel (or in this cgroup)
        usage = CpuUsage(tuple(min(100, max(0, round(p))) for p in percents))
        return Sample(stamp, metrics, (usage,), unsupported=frozenset(unsupported))

    @staticmethod
    def _quota_rates(
        metrics: dict[str, Number],
        unsupported: set[str],
        quota: float,
        prev: tuple[int, CpuStat] | None,
        now: tuple[int, CpuStat] | None,
    ) -> None:
        if now is None:
            # A quota without CPU accounting (v1 without cpuacct): the host's mean stays.
            unsupported.update(_CGROUP_RATES[1:])
            return
        if prev is None or now[0] <= prev[0] or now[1].usage_ns < prev[1].usage_ns:
            # First reading, a clock step back, or the cgroup was recreated: no rate this time,
            # and no host-wide mean either, which would be on another scale.
            del metrics["sys.cpu.percent.avg"]
            return
        metrics["sys.cpu.percent.avg"] = quota_percent(prev[1], now[1], quota, now[0] - prev[0])
        before, after = prev[1], now[1]
        deltas = (
            after.nr_periods - before.nr_periods,
            after.nr_throttled - before.nr_throttled,
            after.throttled_ns - before.throttled_ns,
        )
        if min(deltas) < 0:
            return  # a throttling counter went back (a damaged cpu.stat): no throttling rate
        metrics["sys.cpu.throttled_percent"] = throttled_percent(before, after)
        metrics["sys.cpu.throttled_s"] = round(deltas[2] / 1e9, 3)

    def close(self) -> None:
        """Nothing to release."""
