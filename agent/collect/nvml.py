"""The one door to NVML: every pynvml call runs here, under a time budget, errors translated.

``Nvml(lib, timeout_s)`` initialises NVML once and shuts it down on
``close()``. Each call runs on one dedicated worker thread while the caller
waits at most ``timeout_s``: a wedged driver can stall that thread, never the
agent. After a call overruns, the facade is *stuck*: further calls fail fast
with ``NvmlStuck`` until the late call returns, then work again.

Errors are translated once, here: NotSupported (and a function missing from
an old driver, including pynvml's ``NVMLLibraryMismatchError``, which is no
``NVMLError``) → ``Unsupported``, GpuIsLost → ``GpuLost``, NotFound →
``NoData``, InvalidArgument on a handle → ``StaleHandle``, anything else,
whatever its class → ``CollectorError`` naming the call and the device. A
failed start is ``NvmlUnavailable``, whose message says why and what to do.

What real NVML does that shapes this file (nvml.h, nvidia-ml-py's pynvml.py):
a call that a device can never answer (fan on SXM boards, utilisation on a
MIG instance, a function the driver lacks) is asked once per device and then
remembered as unsupported; versioned calls (``nvmlDeviceGetTemperatureV``,
``..._ComputeRunningProcesses`` which pynvml binds to ``_v3``) fall back to
the older symbol on older drivers; a MIG-enabled GPU's memory answers
NO_PERMISSION to an unprivileged caller, so every field is read on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

import pynvml

from agent.collect.gpu_types import (
    GpuReading,
    GpuStatic,
    Handle,
    XidEvent,
    XidPoll,
    checked,
    shown,
    whole,
)
from agent.collect.nvml_library import LIBRARY
from agent.errors import CollectorError, GpuLost, NoData, Unsupported
from agent.worker import Stopped, Worker

T = TypeVar("T")
_EVENT_POLL_LIMIT = 64  # events drained per poll, so a storm cannot keep a sample busy


class NvmlUnavailable(CollectorError):
    """NVML cannot start here (no library, no driver, version mismatch): GPU sampling is off."""


class NvmlStuck(CollectorError):
    """An NVML call overran its time budget; the driver may be wedged."""


class _Missing(Unsupported):
    """The installed driver's NVML lacks this function (older than the binding)."""


class StaleHandle(CollectorError):
    """NVML no longer knows this handle (a MIG instance destroyed or re-created)."""


class SampleDeadline(CollectorError):
    """The sample's time is spent: the devices not read yet wait for the next one."""


def _on(where: str) -> str:
    return f" on {where}" if where else ""


def _translate(call: str, where: str, exc: Exception) -> Exception:
    """Map whatever the binding raised from `call` to our exception tree."""
    on = _on(where)
    if isinstance(exc, pynvml.NVMLLibraryMismatchError):
        # pynvml's @throwOnVersionMismatch: the versioned symbol it binds (…_v3) is missing
        # from an older driver (R470 lacks nvmlDeviceGetComputeRunningProcesses_v3).
        return _Missing(f"{call} needs a newer NVIDIA driver{on}")
    if not isinstance(exc, pynvml.NVMLError):
        # ctypes or binding trouble (a struct of another size, a missing attribute): still
        # one field's failure, never an exception that escapes the sampler.
        return CollectorError(f"NVML {call} failed{on}: {type(exc).__name__}: {exc}")
    if isinstance(exc, pynvml.NVMLError_NotSupported):
        return Unsupported(f"{call} is not supported{on}")
    if isinstance(exc, pynvml.NVMLError_FunctionNotFound):
        return _Missing(f"{call} is missing from this driver's NVML{on}; update the NVIDIA driver")
    if isinstance(exc, pynvml.NVMLError_NotFound):
        return NoData(f"{call}{on}: not found")
    if isinstance(exc, pynvml.NVMLError_InvalidArgument) and where:
        return StaleHandle(f"NVML {call}{on}: the handle is no longer valid")
    if isinstance(exc, pynvml.NVMLError_GpuIsLost):
        return GpuLost(
            f"{where or 'a GPU'} is lost ({call}); check nvidia-smi and the kernel log (XID 79)"
        )
    if isinstance(exc, pynvml.NVMLError_NoPermission):
        return CollectorError(
            f"{call}{on}: permission denied; run the agent as root or give its user "
            "access to /dev/nvidia*"
        )
    return CollectorError(f"NVML {call} failed{on}: {exc}")


NOTED = object()  # what _optional returns for a field that failed (None is a value it may give)


def _unavailable(exc: Exception) -> NvmlUnavailable:
    """Say why NVML did not start and what to do about it."""
    off = "GPU sampling is off"
    if isinstance(exc, pynvml.NVMLError_LibraryNotFound):
        why = f"NVML library {LIBRARY} not found; install the NVIDIA driver to sample GPUs"
    elif isinstance(exc, pynvml.NVMLError_DriverNotLoaded):
        why = "NVIDIA driver not loaded; load the nvidia kernel module (check with nvidia-smi)"
    elif isinstance(exc, pynvml.NVMLError_LibRmVersionMismatch):
        why = (
            "NVML library and NVIDIA kernel driver versions differ (driver updated without "
            "a reboot); reboot or reload the nvidia module"
        )
    elif isinstance(exc, pynvml.NVMLError_NoPermission):
        why = "no permission to open /dev/nvidia*; run the agent as root or in the video group"
    elif isinstance(exc, CollectorError):  # the time budget ran out
        why = str(exc)
    else:
        why = f"NVML failed to start: {exc}"
    return NvmlUnavailable(f"{why}; {off}")


def _counter(value: object) -> int | None:
    """Return an unsigned NVML field value that read successfully, else None."""
    if getattr(value, "nvmlReturn", None) != pynvml.NVML_SUCCESS:
        return None
    return whole(getattr(getattr(value, "value", None), "ullVal", None))


def _handle_key(handle: Handle) -> object:
    """Return what tells device handles apart: a ctypes pointer's address, or the fake's value."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return handle


def _instance(value: object) -> int | None:
    """Return a MIG GPU or compute instance id, or None for NVML's 'not a MIG event' (~0)."""
    got = whole(value)
    return None if got is None or got >= 0xFFFFFFFF else got


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def cuda_version_text(version: int) -> str:
    """Return NVML's integer CUDA driver version (12040) as "12.4"."""
    return f"{version // 1000}.{version % 1000 // 10}"


@dataclass
class _Notes:
    """What a reading could not give: fields unsupported, and fields that failed otherwise."""

    unsupported: set[str] = field(default_factory=set)
    errors: list[tuple[str, str]] = field(default_factory=list)


_BUSY = ("gpu_utilization_percent", "memory_utilization_percent")
_P = pynvml
_VOL = pynvml.NVML_VOLATILE_ECC  # counts since the driver loaded, not the lifetime aggregate
# GpuReading field, NVML call, arguments after the handle: what a whole GPU gives.
_WHOLE_GPU: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("power_mw", "nvmlDeviceGetPowerUsage", ()),
    ("power_limit_mw", "nvmlDeviceGetEnforcedPowerLimit", ()),
    ("temperature_c", "nvmlDeviceGetTemperatureV", (_P.NVML_TEMPERATURE_GPU,)),
    ("sm_clock_mhz", "nvmlDeviceGetClockInfo", (_P.NVML_CLOCK_SM,)),
    ("memory_clock_mhz", "nvmlDeviceGetClockInfo", (_P.NVML_CLOCK_MEM,)),
    ("fan_percent", "nvmlDeviceGetFanSpeed", ()),
    ("throttle_reasons", "nvmlDeviceGetCurrentClocksEventReasons", ()),
    ("ecc_corrected", "nvmlDeviceGetTotalEccErrors", (_P.NVML_MEMORY_ERROR_TYPE_CORRECTED, _VOL)),
    (
        "ecc_uncorrected",
        "nvmlDeviceGetTotalEccErrors",
        (_P.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, _VOL),
    ),
)
# The newer call first; an older driver (or binding) lacks it, so the older one is asked.
# ClocksEventReasons came with R535; TemperatureV with NVML 12.x (the plain call is deprecated
# and announced for removal in CUDA 14); pynvml binds ComputeRunningProcesses to _v3 (R510+).
_OLD_NAMES = {
    "nvmlDeviceGetCurrentClocksEventReasons": "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetTemperatureV": "nvmlDeviceGetTemperature",
    "nvmlDeviceGetComputeRunningProcesses": "nvmlDeviceGetComputeRunningProcesses_v2",
}
# PCIe traffic: NVML's byte counters (one cheap field-values call, rates from deltas) where the
# driver has them; nvmlDeviceGetPcieThroughput samples for ~20 ms per call, so it is the fallback,
# asked at most once per _PCIE_SLOW_S.
_PCIE_FIELDS = (_P.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, _P.NVML_FI_DEV_PCIE_COUNT_RX_BYTES)
_PCIE_SLOW_S = 30.0


class Nvml:
    """NVML, initialised once, every call under a time budget; close() shuts it down.

    Safe to call from several threads: calls run one at a time on the worker,
    and each caller waits at most ``timeout_s`` counted from its request.
    """

    def __init__(self, lib: ModuleType | Any = None, timeout_s: float = 2.0) -> None:
        self._lib = pynvml if lib is None else lib
        self._closed = False
        self._events: Any = None
        self._never: dict[tuple[str, str], bool] = {}  # (device, call) → missing, not just unsup.
        self._pcie: dict[str, tuple[int, int, int]] = {}  # device → (µs, tx bytes, rx bytes)
        self._pcie_slow_at: dict[str, float] = {}  # device → when the slow call last ran
        self._deadline: float | None = None  # monotonic time the current sample must end by
        self._event_uuids: dict[object, object] = {}  # registered handle → its UUID
        self._worker = Worker(
            "nvml",
            budget_s=timeout_s,
            overrun=NvmlStuck,
            hint="the driver may be wedged",
            resume="GPU sampling resumes when it returns",
        )
        try:
            self._run("nvmlInit", "", self._lib.nvmlInit, raw=True)
        except (pynvml.NVMLError, CollectorError) as exc:
            self._closed = True
            self._worker.close()
            raise _unavailable(exc) from None

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stuck(self) -> bool:
        """Whether a call overran its budget and has not returned yet."""
        return self._worker.stuck

    def close(self) -> None:
        """Free the event set and shut NVML down (skipped while a call is stuck)."""
        if self._closed:
            return
        if not self.stuck:
            try:
                if self._events is not None:
                    events = self._events
                    self._run("nvmlEventSetFree", "", lambda: self._lib.nvmlEventSetFree(events))
                self._run("nvmlShutdown", "", self._lib.nvmlShutdown)
            except CollectorError:
                pass  # closing anyway; the process may be on its way out
        self._closed = True
        self._worker.close()

    # -- the one way a call is made ------------------------------------------------------------

    def _run(self, call: str, where: str, fn: Callable[[], T], *, raw: bool = False) -> T:
        """Run `fn` under the budget; translate what it raises unless `raw`."""
        if self._closed:
            raise CollectorError(f"NVML {call}{_on(where)}: NVML is already shut down")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise SampleDeadline(f"the GPU sample ran out of time before {call}{_on(where)}")
        try:
            return self._worker.call(f"NVML call {call}{_on(where)}", fn)
        except CollectorError:
            raise
        except Stopped:  # closed by another thread since the check above
            raise CollectorError(f"NVML {call}{_on(where)}: NVML is already shut down") from None
        except Exception as exc:  # every binding exception is handled here, at the one boundary
            if raw and isinstance(exc, pynvml.NVMLError):
                raise
            raise _translate(call, where, exc) from None

    def set_deadline(self, seconds: float | None) -> None:
        """Make calls fail fast with SampleDeadline `seconds` from now (None: no deadline)."""
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def _call(self, call: str, where: str, *args: object) -> Any:
        fn = getattr(self._lib, call, None)
        if fn is None:
            raise _Missing(f"{call} is missing from this pynvml; update nvidia-ml-py")
        return self._run(call, where, lambda: fn(*args))

    def _optional(
        self, call: str, where: str, fields: Sequence[str], notes: _Notes, *args: object
    ) -> Any:
        """Call; on Unsupported or another per-field failure note it and return ``NOTED``.

        GpuLost, NvmlStuck, StaleHandle and SampleDeadline go up: they end the
        device's reading. What a device can never answer is asked once, then
        remembered.
        """
        never = self._never.get((where, call))
        if never is not None:
            fallback = _OLD_NAMES.get(call)
            if never and fallback:
                return self._optional(fallback, where, fields, notes, *args)
            notes.unsupported.update(fields)
            return NOTED
        try:
            return self._call(call, where, *args)
        except (GpuLost, NvmlStuck, StaleHandle, SampleDeadline):
            raise
        except _Missing:
            self._never[(where, call)] = True
            fallback = _OLD_NAMES.get(call)
            if fallback:
                return self._optional(fallback, where, fields, notes, *args)
            notes.unsupported.update(fields)
        except Unsupported:
            self._never[(where, call)] = False
            notes.unsupported.update(fields)
        except CollectorError as exc:
            notes.errors.extend((f, str(exc)) for f in fields)
        return NOTED

    def _maybe(self, call: str, where: str, *args: object) -> Any:
        """Call, or return None on any failure but a stuck driver (static facts: best effort)."""
        try:
            return self._call(call, where, *args)
        except NvmlStuck:
            raise
        except CollectorError:
            return None

    # -- system --------------------------------------------------------------------------------

    def driver_version(self) -> str:
        """Return the NVIDIA driver version, e.g. "550.54.15"."""
        return _text(self._call("nvmlSystemGetDriverVersion", ""))

    def cuda_driver_version(self) -> str:
        """Return the CUDA version the driver supports, e.g. "12.4"."""
        return cuda_version_text(int(self._call("nvmlSystemGetCudaDriverVersion", "")))

    def nvml_version(self) -> str:
        """Return the NVML library version, e.g. "12.550.54.15"."""
        return _text(self._call("nvmlSystemGetNVMLVersion", ""))

    def count(self) -> int:
        """Return how many GPUs NVML sees (MIG instances not counted)."""
        return int(self._call("nvmlDeviceGetCount", ""))

    # -- devices -------------------------------------------------------------------------------

    def handle(self, nvml_index: int) -> Handle:
        """Return the handle of the GPU at NVML index `nvml_index`."""
        return self._call("nvmlDeviceGetHandleByIndex", f"NVML GPU {nvml_index}", nvml_index)

    def uuid(self, handle: Handle, where: str) -> str:
        """Return a device's UUID ("GPU-…" or "MIG-…")."""
        return _text(self._call("nvmlDeviceGetUUID", where, handle))

    def mig_enabled(self, handle: Handle, where: str) -> bool | None:
        """Return whether MIG mode is on now, or None when the GPU has no MIG mode."""
        try:
            current, _pending = self._call("nvmlDeviceGetMigMode", where, handle)
        except Unsupported:
            return None
        return bool(current == pynvml.NVML_DEVICE_MIG_ENABLE)

    def mig_devices(self, handle: Handle, where: str) -> list[tuple[int, Handle]]:
        """Return (index, handle) of each MIG instance on a MIG-enabled GPU, in NVML's order."""
        slots = int(self._call("nvmlDeviceGetMaxMigDeviceCount", where, handle))
        found = []
        for j in range(slots):
            try:
                found.append(
                    (j, self._call("nvmlDeviceGetMigDeviceHandleByIndex", where, handle, j))
                )
            except NoData:
                continue  # an empty slot: no instance was created there
        return found

    def static(self, nvml_index: int) -> GpuStatic:
        """Return one GPU's identity and limits; what cannot be read is None."""
        where = f"NVML GPU {nvml_index}"
        handle = self._maybe("nvmlDeviceGetHandleByIndex", where, nvml_index)
        if handle is None:
            return GpuStatic(nvml_index, None, None, None, None, None)
        name = self._maybe("nvmlDeviceGetName", where, handle)
        uuid = self._maybe("nvmlDeviceGetUUID", where, handle)
        memory = self._maybe("nvmlDeviceGetMemoryInfo", where, handle)
        limit = self._maybe("nvmlDeviceGetEnforcedPowerLimit", where, handle)
        mode = self._maybe("nvmlDeviceGetMigMode", where, handle)
        return GpuStatic(
            nvml_index=nvml_index,
            name=None if name is None else _text(name),
            uuid=None if uuid is None else _text(uuid),
            total_bytes=None if memory is None else whole(getattr(memory, "total", None)),
            power_limit_mw=whole(limit),
            mig_enabled=None if mode is None else mode[0] == pynvml.NVML_DEVICE_MIG_ENABLE,
        )

    def read(
        self, handle: Handle, where: str, *, whole_gpu: bool = True, processes: bool = False
    ) -> GpuReading:
        """Read one device now; every field may be None, each failing on its own.

        A MIG instance (`whole_gpu=False`) gives memory, utilisation and
        processes only. A MIG-enabled GPU's memory is refused to an
        unprivileged caller (NO_PERMISSION): that is one field's error, and
        power, temperature and the rest are still read. Raises GpuLost,
        NvmlStuck, StaleHandle or SampleDeadline, which end the device's reading.
        """
        notes = _Notes()
        total = used = free = None
        memory = self._optional("nvmlDeviceGetMemoryInfo", where, ("memory",), notes, handle)
        if memory is not NOTED:
            total, used, free = (whole(getattr(memory, n, None)) for n in ("total", "used", "free"))
            if total is None or used is None or free is None or used > total:
                notes.errors.append(
                    (
                        "memory",
                        f"NVML nvmlDeviceGetMemoryInfo{_on(where)} gave impossible figures (total "
                        f"{shown(getattr(memory, 'total', None))}, used "
                        f"{shown(getattr(memory, 'used', None))}, free "
                        f"{shown(getattr(memory, 'free', None))}); skipped this time",
                    )
                )
                total = used = free = None
        found: dict[str, tuple[str, object]] = {}  # field → (the call, what it gave)
        busy = self._optional("nvmlDeviceGetUtilizationRates", where, _BUSY, notes, handle)
        if busy is not NOTED:
            for key, part in zip(_BUSY, ("gpu", "memory"), strict=True):
                found[key] = ("nvmlDeviceGetUtilizationRates", getattr(busy, part, None))
        wanted = list(_WHOLE_GPU if whole_gpu else ())
        if processes:
            wanted.append(("processes", "nvmlDeviceGetComputeRunningProcesses", ()))
        for key, call, extra in wanted:
            value = self._optional(call, where, (key,), notes, handle, *extra)
            if value is not NOTED:
                found[key] = (call, value)
        values: dict[str, Any] = {}
        if whole_gpu:
            values.update(self._pcie_rates(handle, where, notes, found))
        for key, (call, value) in found.items():
            good = checked(key, value)
            if good is None:  # a broken driver or binding: never sent, always reported
                notes.errors.append(
                    (key, f"NVML {call}{_on(where)} gave {shown(value)} for {key}; left out")
                )
            else:
                values[key] = good
        if total is None and not values and notes.errors:
            # Nothing read at all: one failure of the device, not one per field.
            raise CollectorError(notes.errors[0][1])
        return GpuReading(
            total_bytes=total,
            used_bytes=used,
            free_bytes=free,
            unsupported=frozenset(notes.unsupported),
            errors=tuple(notes.errors),
            **values,
        )

    def _pcie_rates(
        self, handle: Handle, where: str, notes: _Notes, found: dict[str, tuple[str, object]]
    ) -> dict[str, int]:
        """Return the PCIe rates in bytes/s from NVML's byte counters (nothing on the first read).

        Where the driver has no counters, the ~20 ms throughput call is asked
        instead, at most once per _PCIE_SLOW_S, its KB/s put in `found`.
        """
        names = ("pcie_tx_bps", "pcie_rx_bps")
        if self._never.get((where, "nvmlDeviceGetFieldValues")) is None:
            got = self._optional(
                "nvmlDeviceGetFieldValues", where, names, notes, handle, list(_PCIE_FIELDS)
            )
            if got is NOTED:
                if (where, "nvmlDeviceGetFieldValues") in self._never:
                    notes.unsupported.difference_update(names)  # not the end: the slow call next
                    return self._pcie_rates(handle, where, notes, found)
                return {}
            tx, rx = (_counter(v) for v in got) if len(got) == 2 else (None, None)
            if tx is not None and rx is not None:
                stamps = [whole(getattr(v, "timestamp", None)) for v in got]
                now_us = stamps[0] or time.monotonic_ns() // 1000
                before = self._pcie.get(where)
                self._pcie[where] = (now_us, tx, rx)
                if before is None or now_us <= before[0] or tx < before[1] or rx < before[2]:
                    return {}  # the first reading, or a counter that wrapped: no rate this time
                span = (now_us - before[0]) / 1e6
                return {
                    "pcie_tx_bps": round((tx - before[1]) / span),
                    "pcie_rx_bps": round((rx - before[2]) / span),
                }
            self._never[(where, "nvmlDeviceGetFieldValues")] = False  # the fields themselves
        now = time.monotonic()
        if now - self._pcie_slow_at.get(where, -_PCIE_SLOW_S) < _PCIE_SLOW_S:
            return {}
        self._pcie_slow_at[where] = now
        for key, counter in zip(
            names, (_P.NVML_PCIE_UTIL_TX_BYTES, _P.NVML_PCIE_UTIL_RX_BYTES), strict=True
        ):
            call = "nvmlDeviceGetPcieThroughput"
            value = self._optional(call, where, (key,), notes, handle, counter)
            if value is not NOTED:
                found[key] = (call, value)
        return {}

    # -- XID events ----------------------------------------------------------------------------

    def watch_xid(self, devices: Sequence[tuple[Handle, str]]) -> list[str]:
        """Register for XID critical errors on `devices` ((handle, where) pairs).

        Returns the `where` of each device registered; devices (or drivers)
        without event support are skipped quietly.
        """
        if self._events is None:
            try:
                self._events = self._call("nvmlEventSetCreate", "")
            except Unsupported:
                return []
        registered: list[tuple[Handle, str]] = []
        for handle, where in devices:
            try:
                self._register(handle, where)
                # Kept now: a GPU that fell off the bus can no longer tell its UUID.
                self._event_uuids[_handle_key(handle)] = self._maybe(
                    "nvmlDeviceGetUUID", where, handle
                )
            except Unsupported:
                continue
            except (NvmlStuck, GpuLost):
                raise
            except CollectorError:
                # nvml.h leaves the event set undefined after a failed registration: free it,
                # start a new one with the devices already in, and go on with the next GPU.
                self._renew_events(registered)
                continue
            registered.append((handle, where))
        return [where for _handle, where in registered]

    def _register(self, handle: Handle, where: str) -> None:
        self._call(
            "nvmlDeviceRegisterEvents",
            where,
            handle,
            pynvml.nvmlEventTypeXidCriticalError,
            self._events,
        )

    def _renew_events(self, registered: list[tuple[Handle, str]]) -> None:
        events, self._events = self._events, None
        with contextlib.suppress(CollectorError):
            self._run("nvmlEventSetFree", "", lambda: self._lib.nvmlEventSetFree(events))
        self._events = self._call("nvmlEventSetCreate", "")
        for handle, where in list(registered):
            try:
                self._register(handle, where)
            except (NvmlStuck, GpuLost):
                raise
            except CollectorError:
                registered.remove((handle, where))

    def poll_xid(self) -> XidPoll:
        """Return the XID events that arrived since the last poll, without waiting.

        An error part-way (GPU_IS_LOST while draining) keeps the events drained
        before it: the XID 79 that says why a GPU fell off the bus is the one
        worth having.
        """
        if self._events is None:
            return XidPoll([], None)
        lib, events = self._lib, self._events
        found: list[XidEvent] = []

        def drain() -> None:
            for _ in range(_EVENT_POLL_LIMIT):
                try:
                    data = lib.nvmlEventSetWait(events, 0)
                except pynvml.NVMLError_Timeout:
                    break  # no event pending: the normal end
                known = self._event_uuids.get(_handle_key(data.device))
                try:
                    uuid: str | None = _text(known or lib.nvmlDeviceGetUUID(data.device))
                except Exception:  # noqa: BLE001 - the event still counts without its UUID
                    uuid = None
                found.append(
                    XidEvent(
                        uuid,
                        int(data.eventData),
                        _instance(getattr(data, "gpuInstanceId", None)),
                        _instance(getattr(data, "computeInstanceId", None)),
                    )
                )

        try:
            self._run("nvmlEventSetWait", "", drain)
        except CollectorError as exc:
            return XidPoll(found, exc)
        return XidPoll(found, None)
