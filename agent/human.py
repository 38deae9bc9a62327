"""Values in the units people read: 23.5 GiB, 1.2 MB/s, 37 %, 215 W, 2026-12-04 12:16:53 UTC.

The wire keeps the wire notes' units (bytes, bytes per second, milliwatts, epoch
ms); these helpers are for what a person reads: ``sample``, ``sysinfo``,
the report's facts and the upload progress line. Sizes use binary units
(GiB, as ``free -h`` and nvidia-smi), rates decimal (MB/s, as ``iostat``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_DECIMAL = ("B/s", "kB/s", "MB/s", "GB/s", "TB/s")
FIRST_MS, LAST_MS = 631_152_000_000, 7_258_118_400_000  # 1990-01-01 .. 2200-01-01 UTC


def _float(n: float) -> float:
    try:
        return float(n)
    except OverflowError:  # an integer past float range (a damaged archive)
        return math.inf


def _scaled(n: float, step: float, units: tuple[str, ...]) -> str:
    """`n` divided by `step` until it fits, with its unit: whole in the first, one decimal on."""
    n = _float(n)
    if not math.isfinite(n):
        return str(n)
    value, unit = float(n), 0
    while abs(value) >= step and unit < len(units) - 1:
        value, unit = value / step, unit + 1
    return f"{value:.0f} {units[unit]}" if unit == 0 else f"{value:.1f} {units[unit]}"


def size(n: float) -> str:
    """Format a byte count: 512 B, 29.3 KiB, 23.5 GiB."""
    return _scaled(n, 1024, _BINARY)


def amount(n: float) -> str:
    """Format bytes sent, in the decimal units of the rates beside them: 980 bytes, 29.3 KB."""
    n = _float(n)
    if not math.isfinite(n) or abs(n) < 1000:
        return f"{n:,.0f} bytes" if math.isfinite(n) else str(n)
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if abs(value) < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def rate(n: float) -> str:
    """Format bytes per second: 0 B/s, 812 kB/s, 1.2 MB/s."""
    return _scaled(n, 1000, _DECIMAL)


def stamp(ms: object) -> str:
    """Format epoch ms as UTC wall-clock time; 'unknown' when absent or implausible."""
    if not isinstance(ms, int) or isinstance(ms, bool) or not FIRST_MS <= ms <= LAST_MS:
        return "unknown"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """Format seconds: 45 s, 3 min 20 s, 2 h 05 min, 3 d 4 h."""
    if not math.isfinite(seconds) or seconds < 0:
        return "unknown"
    s = round(seconds)
    days, rest = divmod(s, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def metric(name: str, value: object) -> str:
    """Format one sys.* metric's value by what its name says it measures."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith("_bps"):
        return rate(value)
    if "percent" in name or "pressure" in name or leaf == "gpu_utilization":
        return f"{value:.1f} %"
    if leaf in ("used", "total", "available", "free", "used_memory", "total_memory",
                "free_memory", "rss_bytes"):  # fmt: skip
        return size(value)
    if leaf == "power_usage" or leaf == "power_limit":
        return f"{value / 1000:.1f} W"  # NVML reports milliwatts
    if leaf == "temperature":
        return f"{value:g} °C"
    if name.endswith("_s"):
        return f"{value:.2f} s"
    return f"{value:,}" if isinstance(value, int) else f"{value:.2f}"


def field(key: str, value: object) -> str:
    """Format a field of a typed body (add-ram-metrics and the like) by its name."""
    lowered = key.lower()
    if lowered == "timestamp":
        return stamp(value)
    if isinstance(value, list):
        shown = ", ".join(field(key, v) for v in value[:64])
        return f"[{shown}{', …' if len(value) > 64 else ''}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {field(k, v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if "ram" in lowered or "memory" in lowered:
        return size(value)
    if "percent" in lowered or "utilization" in lowered:
        return f"{value:.1f} %"
    if "power" in lowered:
        return f"{value / 1000:.1f} W"
    return f"{value:g}"


# Labels for the keys of Log Additional System Info (agent.collect.static) and their units.
_INFO_LABELS = {
    "cpu_model": "CPU model",
    "cpu_count_logical": "CPUs (logical)",
    "cpu_count_physical": "CPU cores (physical)",
    "ram_total_bytes": "RAM",
    "kernel": "Kernel",
    "boot_time_ms": "Booted",
    "os_distribution": "Distribution",
    "container_runtime": "Container",
    "python_source": "Python facts from",
    "comet_agent_version": "comet-agent version",
    "cgroup_version": "cgroup version",
    "cgroup_path": "cgroup",
    "cgroup_cpu_view": "CPU limit seen by",
    "cgroup_memory_view": "Memory limit seen by",
}


def info(key: str, value: object) -> tuple[str, str]:
    """Return a label and a human value for one additional-system-info key."""
    label = _INFO_LABELS.get(key) or key.replace("_", " ").capitalize()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if key.endswith("_bytes"):
            return label.removesuffix(" bytes"), size(value)
        if key.endswith("_ms"):
            return label.removesuffix(" ms"), stamp(value)
    return label, value if isinstance(value, str) else str(value)
