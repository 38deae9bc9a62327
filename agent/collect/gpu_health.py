"""GPU health events: XID errors, new ECC errors, clocks throttled and released, lost devices.

``GpuHealth`` remembers what it saw at the previous sample and turns changes
into ``HealthEvent``s with one-line messages ("GPU 0: XID 79 (GPU has fallen
off the bus)"). It holds no NVML: the sampler feeds it readings. Event kinds:
``gpu.xid``, ``gpu.ecc``, ``gpu.throttle_start``, ``gpu.throttle_end``,
``gpu.lost``, ``gpu.error``.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.collect.base import HealthEvent

# Well-known XIDs, from NVIDIA's "XID Errors" catalogue (docs.nvidia.com/deploy/xid-errors).
XID_MEANING: Mapping[int, str] = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    32: "invalid or corrupted push buffer stream",
    43: "GPU stopped processing",
    45: "preemptive cleanup after a previous error",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapping failed",
    68: "video processor exception",
    69: "graphics engine class error",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    999: "unknown: NVML could not tell which XID",  # nvml.h: nvmlEventMigConfigChange/999 = unknown
}

# NVML's clocks event (throttle) reason bits (nvmlClocksEventReason*).
THROTTLE_REASONS: Mapping[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# Idle and the clocks an administrator chose are not the GPU holding itself back.
NOT_THROTTLING = 0x1 | 0x2


def xid_message(label: str, xid: int) -> str:
    """Return the one-line message for an XID on the device `label`."""
    meaning = XID_MEANING.get(xid, "see NVIDIA's XID catalogue")
    return f"{label}: XID {xid} ({meaning})"


def throttling(reasons: int) -> int:
    """Return the reason bits that mean the clocks are held back (idle and app clocks removed)."""
    return reasons & ~NOT_THROTTLING


def reason_names(reasons: int) -> list[str]:
    """Return the names of the bits set in a throttle-reasons bitmask, lowest bit first."""
    names = [name for bit, name in THROTTLE_REASONS.items() if reasons & bit]
    unknown = reasons & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names


class GpuHealth:
    """Turn successive readings into health events; one instance per sampler."""

    def __init__(self) -> None:
        self._ecc: dict[tuple[str, str], int] = {}
        self._throttled: dict[str, int] = {}
        self._failures: dict[str, dict[str, str]] = {}

    def xid(
        self,
        key: str,
        label: str,
        xid: int,
        ts: int,
        gpu_instance: int | None = None,
        compute_instance: int | None = None,
    ) -> HealthEvent:
        """Return the event for one XID on the device `key` ("gpu.0"), with its MIG instance."""
        message = xid_message(label, xid)
        data: dict[str, object] = {"device": key, "xid": xid}
        if gpu_instance is not None:
            message += f" on MIG GPU instance {gpu_instance}"
            data["gpu_instance"] = gpu_instance
            if compute_instance is not None:
                message += f", compute instance {compute_instance}"
                data["compute_instance"] = compute_instance
        return HealthEvent("gpu.xid", message, ts, data)

    def ecc(self, key: str, label: str, kind: str, count: int | None, ts: int) -> list[HealthEvent]:
        """Return an event when the volatile ECC count of `kind` grew since the last sample.

        The first count seen is the baseline: errors from before the agent
        started are not news.
        """
        if count is None:
            return []
        before = self._ecc.get((key, kind))
        self._ecc[(key, kind)] = count
        if before is None or count <= before:
            return []
        new = count - before
        plural = "s" if new != 1 else ""
        message = f"{label}: {new} new {kind} ECC error{plural} (volatile count {count})"
        data = {"device": key, "type": kind, "new": new, "total": count}
        return [HealthEvent("gpu.ecc", message, ts, data)]

    def throttle(self, key: str, label: str, reasons: int | None, ts: int) -> list[HealthEvent]:
        """Return an event when the clocks start or stop being held back.

        A device throttled at the first sample gets a start event: it is a
        state the experiment runs in.
        """
        if reasons is None:
            return []
        now = throttling(reasons)
        before = self._throttled.get(key, 0)
        self._throttled[key] = now
        if now and not before:
            names = ", ".join(reason_names(now))
            message = f"{label}: clocks throttled ({names})"
            return [HealthEvent("gpu.throttle_start", message, ts, {"device": key, "reasons": now})]
        if before and not now:
            message = f"{label}: clocks no longer throttled"
            return [HealthEvent("gpu.throttle_end", message, ts, {"device": key})]
        return []

    def lost(self, key: str, label: str, uuid: str, ts: int) -> HealthEvent:
        """Return the event for a device that fell off the bus; it is not sampled again."""
        message = f"{label}: lost ({uuid}); no longer sampled; check nvidia-smi and the kernel log"
        return HealthEvent("gpu.lost", message, ts, {"device": key, "uuid": uuid})

    def failures(self, scope: str, found: Mapping[str, str], ts: int) -> list[HealthEvent]:
        """Return a ``gpu.error`` event for each failure in `scope` that is new or changed.

        `found` maps what failed ("gpu.0", "gpu.0.fan_speed") to its message;
        a failure that repeats unchanged is not news, and one that is gone is
        forgotten, so its return is news again.
        """
        before = self._failures.get(scope, {})
        self._failures[scope] = dict(found)
        return [
            HealthEvent("gpu.error", message, ts, {"device": scope, "field": what})
            for what, message in found.items()
            if before.get(what) != message
        ]
