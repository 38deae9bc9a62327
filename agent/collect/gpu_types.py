"""What NVML readings look like once they leave agent/collect/nvml.py: plain frozen dataclasses.

Units are in the names; a field a device cannot give is None, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Handle = Any  # an NVML device handle: a ctypes pointer from pynvml, any object from the fake


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

    total_bytes: int
    used_bytes: int
    free_bytes: int
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
    xid: int
