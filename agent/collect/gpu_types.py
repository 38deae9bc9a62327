"""What NVML readings look like once they leave agent/collect/nvml.py: plain frozen dataclasses.

Units are in the names; a field a device cannot give is None, never 0. The
checks at the bottom say which values NVML may hand over at all: NVML's
counters are unsigned, so a negative, fractional or non-numeric value (or
a percentage past 100) is a broken driver or binding, and is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Handle = Any  # an NVML device handle: a ctypes pointer from pynvml, any object from the fake
_PCIE_KB = 1024  # NVML gives PCIe throughput in KB/s (nvidia-smi's unit); we send bytes/s


@dataclass(frozen=True)
class GpuStatic:
    """What does not change while the agent runs: one physical GPU's identity and limits."""

    nvml_index: int
    name: str | None
    uuid: str | None
    total_bytes: int | None
    power_limit_mw: int | None  # nvmlDeviceGetEnforcedPowerLimit
    mig_enabled: bool | None  # None: the GPU has no MIG mode


@dataclass(frozen=True)
class GpuProcess:
    """A process with a compute context on a device: its host pid and GPU memory."""

    pid: int
    used_bytes: int | None  # None where NVML cannot tell (WDDM, some MIG set-ups)


@dataclass(frozen=True)
class GpuReading:
    """One device's readings at one instant; None for what it cannot give (see `unsupported`)."""

    total_bytes: int | None
    used_bytes: int | None
    free_bytes: int | None
    gpu_utilization_percent: int | None = None
    memory_utilization_percent: int | None = None
    power_mw: int | None = None
    power_limit_mw: int | None = None
    temperature_c: int | None = None
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None
    fan_percent: int | None = None
    pcie_tx_bps: int | None = None
    pcie_rx_bps: int | None = None
    throttle_reasons: int | None = None  # NVML's clocks-event-reasons bitmask
    ecc_corrected: int | None = None  # volatile: since the driver loaded
    ecc_uncorrected: int | None = None
    processes: tuple[GpuProcess, ...] | None = None
    unsupported: frozenset[str] = frozenset()  # names of the fields above that are None for good
    errors: tuple[tuple[str, str], ...] = ()  # (field, message) for fields that failed otherwise


@dataclass(frozen=True)
class XidEvent:
    """One XID (critical error) event NVML reported for a device."""

    uuid: str | None
    xid: int  # 999: NVML could not tell which XID it was
    gpu_instance: int | None = None  # MIG: the GPU and compute instance the event came from
    compute_instance: int | None = None


@dataclass(frozen=True)
class XidPoll:
    """What one poll of the event set gave: the events drained, and the error that ended it."""

    events: list[XidEvent]
    error: Exception | None


def whole(value: object) -> int | None:
    """Return `value` if it is a whole number >= 0 (what NVML's counters are), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def percent(value: object) -> int | None:
    """Return `value` if it is a whole percentage from 0 to 100, else None."""
    count = whole(value)
    return count if count is not None and count <= 100 else None


def gpu_processes(found: object) -> tuple[GpuProcess, ...] | None:
    """Return NVML's compute processes as GpuProcess, or None if any pid or size is nonsense."""
    if not isinstance(found, Iterable) or isinstance(found, str | bytes):
        return None
    out = []
    for proc in found:
        pid, size = whole(getattr(proc, "pid", None)), getattr(proc, "usedGpuMemory", None)
        if pid is None or (size is not None and whole(size) is None):
            return None
        out.append(GpuProcess(pid, size))
    return tuple(out)


def checked(field: str, value: object) -> object | None:
    """Return NVML's `value` for the GpuReading `field` in our units, or None if it is nonsense.

    Utilisation is a percentage; a fan may run past 100 % (NVML's own docs say so).
    """
    if field == "processes":
        return gpu_processes(value)
    if field in ("gpu_utilization_percent", "memory_utilization_percent"):
        return percent(value)
    count = whole(value)
    return count * _PCIE_KB if count is not None and field.startswith("pcie_") else count


def shown(value: object, limit: int = 40) -> str:
    """`value` for a one-line message: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
