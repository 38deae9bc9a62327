"""RAM: Add RAM Metrics and sys.ram.*, with a cgroup memory limit taking the host's place.

Host view (SDK semantics): total is MemTotal, available MemAvailable, used
``total - available`` (not psutil's ``used``), percent as psutil rounds it.

Cgroup view, under a memory limit below the host's memory: total is the
limit and used is the cgroup's working set, its usage minus inactive page
cache (``memory.current - inactive_file`` on v2, ``memory.usage_in_bytes -
total_inactive_file`` on v1): what ``docker stats`` and the kubelet report,
and what the OOM killer weighs, since inactive cache is reclaimed before any
process is killed. available is ``total - used``.

Either way, where the cgroup counts them, ``sys.ram.oom_kills`` (cumulative,
from memory.events) and ``sys.ram.pressure.some_avg10`` come along, and each
new OOM kill is a health event.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.collect.base import Clock, HealthEvent, Number, Roots, Sample, read_kept
from agent.collect.cgroup import (
    Cgroup,
    find_cgroup_or_none,
    memory_limit_binds,
    read_memory_events,
    read_memory_limit,
    read_memory_usage,
    read_pressure,
    working_set,
)
from agent.collect.readings import RamUsage
from agent.errors import CollectorError
from agent.message import now_ms

_MEMINFO_FIELDS = frozenset({"MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached"})
OOM_KILLS = "sys.ram.oom_kills"
PRESSURE = "sys.ram.pressure.some_avg10"


@dataclass(frozen=True)
class Memory:
    """Total, used and available bytes, and the used share in percent."""

    total: int
    used: int
    available: int
    percent: float

    @classmethod
    def of(cls, total: int, available: int) -> Memory:
        """Derive used and percent the SDK's way: used = total - available."""
        available = min(max(available, 0), total)
        used = total - available
        return cls(total, used, available, round(used / total * 100, 1) if total else 0.0)


def parse_meminfo(text: str) -> Memory:
    """Return the host's memory from the text of /proc/meminfo."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in _MEMINFO_FIELDS:
            try:
                fields[name] = int(rest.split()[0]) * 1024
            except (IndexError, ValueError):
                fields[name] = -1
            # Bytes fit a signed 64-bit number (what Comet keeps) and are never negative.
            if not 0 <= fields[name] < 1 << 63:
                raise CollectorError(f"/proc/meminfo: unexpected line {line[:60]!r}")
            if name == "MemAvailable" and "MemTotal" in fields:
                break  # lines 1 and 3 of ~55: the rest is only needed by old kernels
    if not fields.get("MemTotal"):
        raise CollectorError(f"/proc/meminfo: no MemTotal in {text[:40]!r}")
    available = fields.get("MemAvailable")
    if available is None:  # kernels before 3.14: the estimate psutil also falls back to
        available = sum(fields.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return Memory.of(fields["MemTotal"], available)


class MemorySampler:
    """Sample RAM: the host's, or the cgroup's working set against its limit."""

    name = "memory"

    def __init__(
        self, *, roots: Roots = Roots(), pid: int | None = None, clock: Clock = now_ms
    ) -> None:
        self._meminfo = roots.proc / "meminfo"
        self._roots = roots
        self._clock = clock
        self._cgroup = find_cgroup_or_none(roots, pid)
        self._oom_kills = self._read_oom_kills()

    def _read_oom_kills(self) -> int | None:
        if self._cgroup is None:
            return None
        try:
            kills = read_memory_events(self._cgroup).get("oom_kill")
        except CollectorError:
            return None
        return kills if kills is None or kills >= 0 else None  # a count: negative is damage

    def collect(self) -> Sample:
        """Read memory now."""
        stamp = self._clock()
        mem = parse_meminfo(read_kept(self._meminfo))
        cg = self._cgroup
        if cg is not None:
            mem = cgroup_memory(cg, mem)
        metrics: dict[str, Number] = {
            "sys.ram.total": mem.total,
            "sys.ram.used": mem.used,
            "sys.ram.available": mem.available,
            "sys.ram.percent.used": mem.percent,
        }
        unsupported: set[str] = set()
        events: list[HealthEvent] = []
        kills, before = self._read_oom_kills(), self._oom_kills
        if kills is None:
            unsupported.add(OOM_KILLS)
        else:
            metrics[OOM_KILLS] = kills
            self._oom_kills = kills
            if before is not None and kills > before:
                events.append(_oom_event(cg, kills - before, kills, stamp))
        try:
            metrics[PRESSURE] = read_pressure(cg, "memory", self._roots)
        except CollectorError:
            unsupported.add(PRESSURE)
        usage = RamUsage(mem.total, mem.used)
        return Sample(stamp, metrics, (usage,), tuple(events), frozenset(unsupported))

    def close(self) -> None:
        """Nothing to release."""


def cgroup_memory(cg: Cgroup, host: Memory) -> Memory:
    """Return the cgroup's view of memory where its limit binds, else `host` unchanged."""
    limit = read_memory_limit(cg)
    if limit is None or not memory_limit_binds(limit, host.total):
        return host
    usage, stat = read_memory_usage(cg)
    return Memory.of(limit, limit - working_set(cg, usage, stat))


def _oom_event(cg: Cgroup | None, new: int, total: int, stamp: int) -> HealthEvent:
    where = f"cgroup {cg.path}" if cg is not None else "this cgroup"
    return HealthEvent(
        kind="oom_kill",
        message=f"OOM killer ended {new} process(es) in {where} ({total} so far); "
        "raise the memory limit or use less memory",
        timestamp_ms=stamp,
        data={"count": new, "total": total},
    )
