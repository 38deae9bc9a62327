"""What the typed endpoints carry, as the collectors read it: plain values, no wire names.

A collector puts these in ``Sample.readings``; ``agent.lifecycle.samples``
turns each into its Comet body with ``agent.api.bodies``, the one place
Comet's camelCase names appear. Units are in the names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CpuUsage:
    """Utilisation of each logical CPU, in CPU order: whole percent, 0-100."""

    percents: tuple[int, ...]


@dataclass(frozen=True)
class RamUsage:
    """The machine's (or the cgroup's) memory: total and used, in bytes."""

    total_bytes: int
    used_bytes: int


@dataclass(frozen=True)
class LoadAverage:
    """The 1-minute load average, not divided by the CPU count (as the SDK sends it)."""

    one_minute: float


@dataclass(frozen=True)
class GpuUsage:
    """One whole GPU's memory (bytes) and utilisation (whole percent)."""

    gpu_id: int
    free_bytes: int
    used_bytes: int
    total_bytes: int
    utilization_percent: int


@dataclass(frozen=True)
class GpuUsages:
    """The GPUs that reported memory and utilisation in one sample."""

    gpus: tuple[GpuUsage, ...]


Reading = CpuUsage | RamUsage | LoadAverage | GpuUsages
