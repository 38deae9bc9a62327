"""The one door to NVML: every pynvml call runs here, under a time budget, errors translated.

``Nvml(lib, timeout_s)`` initialises NVML once and shuts it down on
``close()``. Each call runs on one dedicated worker thread while the caller
waits at most ``timeout_s``: a wedged driver can stall that thread, never the
agent. After a call overruns, the facade is *stuck*: further calls fail fast
with ``NvmlStuck`` until the late call returns, then work again.

Errors are translated once, here: NotSupported (and a function missing from
an old driver) → ``Unsupported``, GpuIsLost → ``GpuLost``, NotFound →
``NoData``, anything else → ``CollectorError`` naming the call and the
device. A failed start is ``NvmlUnavailable``, whose message says why and
what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

import pynvml

from agent.collect.budget import BudgetedWorker, Overrun
from agent.collect.gpu_types import GpuReading, GpuStatic, Handle, XidEvent, checked, shown, whole
from agent.errors import CollectorError, GpuLost, NoData, Unsupported

T = TypeVar("T")
_EVENT_POLL_LIMIT = 64  # events drained per poll, so a storm cannot keep a sample busy


class NvmlUnavailable(CollectorError):
    """NVML cannot start here (no library, no driver, version mismatch): GPU sampling is off."""


class NvmlStuck(Overrun):
    """An NVML call overran its time budget; the driver may be wedged."""


class _Missing(Unsupported):
    """The installed driver's NVML lacks this function (older than the binding)."""


def _on(where: str) -> str:
    return f" on {where}" if where else ""


def _translate(call: str, where: str, exc: Exception) -> Exception:
    """Map an NVML error from `call` to our exception tree (foreign errors pass unchanged)."""
    if not isinstance(exc, pynvml.NVMLError):
        return exc
    on = _on(where)
    if isinstance(exc, pynvml.NVMLError_NotSupported):
        return Unsupported(f"{call} is not supported{on}")
    if isinstance(exc, pynvml.NVMLError_FunctionNotFound):
        return _Missing(f"{call} is missing from this driver's NVML{on}; update the NVIDIA driver")
    if isinstance(exc, pynvml.NVMLError_NotFound):
        return NoData(f"{call}{on}: not found")
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
        why = "NVML library libnvidia-ml.so.1 not found; install the NVIDIA driver to sample GPUs"
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
    ("temperature_c", "nvmlDeviceGetTemperature", (_P.NVML_TEMPERATURE_GPU,)),
    ("sm_clock_mhz", "nvmlDeviceGetClockInfo", (_P.NVML_CLOCK_SM,)),
    ("memory_clock_mhz", "nvmlDeviceGetClockInfo", (_P.NVML_CLOCK_MEM,)),
    ("fan_percent", "nvmlDeviceGetFanSpeed", ()),
    ("pcie_tx_bps", "nvmlDeviceGetPcieThroughput", (_P.NVML_PCIE_UTIL_TX_BYTES,)),
    ("pcie_rx_bps", "nvmlDeviceGetPcieThroughput", (_P.NVML_PCIE_UTIL_RX_BYTES,)),
    ("throttle_reasons", "nvmlDeviceGetCurrentClocksEventReasons", ()),
    ("ecc_corrected", "nvmlDeviceGetTotalEccErrors", (_P.NVML_MEMORY_ERROR_TYPE_CORRECTED, _VOL)),
    (
        "ecc_uncorrected",
        "nvmlDeviceGetTotalEccErrors",
        (_P.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, _VOL),
    ),
)
# Drivers before 535 lack the newer name; the old one goes away in CUDA 14.
_OLD_NAMES = {"nvmlDeviceGetCurrentClocksEventReasons": "nvmlDeviceGetCurrentClocksThrottleReasons"}


class Nvml:
    """NVML, initialised once, every call under a time budget; close() shuts it down.

    Safe to call from several threads: calls run one at a time on the worker,
    and each caller waits at most ``timeout_s`` counted from its request.
    """

    def __init__(self, lib: ModuleType | Any = None, timeout_s: float = 2.0) -> None:
        self._lib = pynvml if lib is None else lib
        self._closed = False
        self._events: Any = None
        self._worker = BudgetedWorker(
            timeout_s,
            name="nvml",
            hint="the driver may be wedged",
            resume="GPU sampling resumes when it returns",
            error=NvmlStuck,
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
        try:
            return self._worker.call(f"NVML call {call}{_on(where)}", fn)
        except pynvml.NVMLError as exc:
            if raw:
                raise
            raise _translate(call, where, exc) from None

    def _call(self, call: str, where: str, *args: object) -> Any:
        fn = getattr(self._lib, call, None)
        if fn is None:
            raise _Missing(f"{call} is missing from this pynvml; update nvidia-ml-py")
        return self._run(call, where, lambda: fn(*args))

    def _optional(
        self, call: str, where: str, fields: Sequence[str], notes: _Notes, *args: object
    ) -> Any:
        """Call; on Unsupported or another per-field failure note it and return ``NOTED``.

        GpuLost and NvmlStuck go up: they end the device's reading.
        """
        try:
            return self._call(call, where, *args)
        except (GpuLost, NvmlStuck):
            raise
        except _Missing:
            fallback = _OLD_NAMES.get(call)
            if fallback:
                return self._optional(fallback, where, fields, notes, *args)
            notes.unsupported.update(fields)
        except Unsupported:
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
        """Read one device now. Memory is required; every other field may be None.

        A MIG instance (`whole_gpu=False`) gives memory, utilisation and
        processes only. Raises GpuLost, NvmlStuck, or CollectorError when
        memory cannot be read.
        """
        memory = self._call("nvmlDeviceGetMemoryInfo", where, handle)
        total, used, free = (whole(getattr(memory, n, None)) for n in ("total", "used", "free"))
        if total is None or used is None or free is None or used > total:
            raise CollectorError(
                f"NVML nvmlDeviceGetMemoryInfo{_on(where)} gave impossible figures (total "
                f"{shown(memory.total)}, used {shown(memory.used)}, free {shown(memory.free)}); "
                "skipped this time"
            )
        notes = _Notes()
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
        for key, (call, value) in found.items():
            good = checked(key, value)
            if good is None:  # a broken driver or binding: never sent, always reported
                notes.errors.append(
                    (key, f"NVML {call}{_on(where)} gave {shown(value)} for {key}; left out")
                )
            else:
                values[key] = good
        return GpuReading(
            total_bytes=total,
            used_bytes=used,
            free_bytes=free,
            unsupported=frozenset(notes.unsupported),
            errors=tuple(notes.errors),
            **values,
        )

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
        registered = []
        for handle, where in devices:
            try:
                self._call(
                    "nvmlDeviceRegisterEvents",
                    where,
                    handle,
                    pynvml.nvmlEventTypeXidCriticalError,
                    self._events,
                )
            except Unsupported:
                continue
            registered.append(where)
        return registered

    def poll_xid(self) -> list[XidEvent]:
        """Return the XID events that arrived since the last poll, without waiting."""
        if self._events is None:
            return []
        lib, events = self._lib, self._events

        def drain() -> list[XidEvent]:
            found: list[XidEvent] = []
            for _ in range(_EVENT_POLL_LIMIT):
                try:
                    data = lib.nvmlEventSetWait(events, 0)
                except pynvml.NVMLError_Timeout:
                    break  # no event pending: the normal end
                try:
                    uuid: str | None = _text(lib.nvmlDeviceGetUUID(data.device))
                except pynvml.NVMLError:
                    uuid = None
                found.append(XidEvent(uuid, int(data.eventData)))
            return found

        return self._run("nvmlEventSetWait", "", drain)
