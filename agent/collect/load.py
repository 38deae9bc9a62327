"""Load: the 1-minute load average for Add Processor Load Metrics and sys.load.avg."""

from __future__ import annotations

import math

from agent.collect.base import Clock, Roots, Sample, read_kept
from agent.collect.readings import LoadAverage
from agent.errors import CollectorError
from agent.message import now_ms


def parse_loadavg(text: str) -> float:
    """Return the 1-minute load average from the text of /proc/loadavg."""
    try:
        load = float(text.split(maxsplit=1)[0])
    except (IndexError, ValueError):
        load = math.nan
    if not math.isfinite(load) or load < 0:  # "nan", "inf", "-1": not a load the kernel writes
        raise CollectorError(f"/proc/loadavg: unexpected content {text[:40]!r}")
    return load


class LoadSampler:
    """Sample the 1-minute load average (not divided by the CPU count, as the SDK sends it)."""

    name = "load"

    def __init__(self, *, roots: Roots = Roots(), clock: Clock = now_ms) -> None:
        self._path = roots.proc / "loadavg"
        self._clock = clock

    def collect(self) -> Sample:
        """Read the load average now."""
        stamp = self._clock()  # stamped when observed; the sender never re-stamps
        load = parse_loadavg(read_kept(self._path))
        return Sample(stamp, {"sys.load.avg": load}, (LoadAverage(load),))

    def close(self) -> None:
        """Nothing to release."""
