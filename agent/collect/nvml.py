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

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import pynvml

from agent.errors import CollectorError, GpuLost, NoData, Unsupported

T = TypeVar("T")
Handle = Any  # an NVML device handle: a ctypes pointer from pynvml, any object from the fake
_EVENT_POLL_LIMIT = 64  # events drained per poll, so a storm cannot keep a sample busy
_PCIE_KB = 1024  # NVML gives PCIe throughput in KB/s (nvidia-smi's unit); we send bytes/s


class NvmlUnavailable(CollectorError):
    """NVML cannot start here (no library, no driver, version mismatch): GPU sampling is off."""


class NvmlStuck(CollectorError):
    """An NVML call overran its time budget; the driver may be wedged."""


class _Missing(Unsupported):
    """The installed driver's NVML lacks this function (older than the binding)."""


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


class _Job:
    """One call handed to the worker, and what came of it."""

    def __init__(self, call: str, where: str, fn: Callable[[], Any]) -> None:
        self.call = call
        self.where = where
        self.fn = fn
        self.done = threading.Event()
        self.abandoned = False
        self.result: Any = None
        self.error: Exception | None = None


def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while (job := jobs.get()) is not None:
        if not job.abandoned:
            try:
                job.result = job.fn()
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller, who raises it
                job.error = exc
        job.done.set()


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


class Nvml:
    """NVML, initialised once, every call under a time budget; close() shuts it down.

    Safe to call from several threads: calls run one at a time on the worker,
    and each caller waits at most ``timeout_s`` counted from its request.
    """

    def __init__(self, lib: ModuleType | Any = None, timeout_s: float = 2.0) -> None:
        self._lib = pynvml if lib is None else lib
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._stuck: _Job | None = None
        self._closed = False
        self._events: Any = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # A daemon thread: a call wedged in the driver must not keep the process alive.
        threading.Thread(target=_work, args=(self._jobs,), name="nvml", daemon=True).start()
        try:
            self._run("nvmlInit", "", self._lib.nvmlInit, raw=True)
        except (pynvml.NVMLError, CollectorError) as exc:
            self._closed = True
            self._jobs.put(None)
            raise _unavailable(exc) from None

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stuck(self) -> bool:
        """Whether a call overran its budget and has not returned yet."""
        with self._lock:
            return self._stuck is not None and not self._stuck.done.is_set()

    def close(self) -> None:
        """Free the event set and shut NVML down (skipped while a call is stuck)."""
        if self._closed:
            return
        if not self.stuck:
            try:
                if self._events is not None:
                    self._run(
                        "nvmlEventSetFree", "", lambda: self._lib.nvmlEventSetFree(self._events)
                    )
                self._run("nvmlShutdown", "", self._lib.nvmlShutdown)
            except CollectorError:
                pass  # closing anyway; the process may be on its way out
        self._closed = True
        self._jobs.put(None)

    # -- the one way a call is made ------------------------------------------------------------

    def _run(self, call: str, where: str, fn: Callable[[], T], *, raw: bool = False) -> T:
        """Run `fn` on the worker and wait at most the budget; translate what it raises."""
        with self._lock:
            if self._closed:
                raise CollectorError(f"NVML {call}{_on(where)}: NVML is already shut down")
            late = self._stuck
            if late is not None:
                if not late.done.is_set():
                    raise NvmlStuck(
                        f"NVML call {late.call}{_on(late.where)} has not returned after "
                        f"{self._timeout_s:g} s; the driver may be wedged; GPU sampling "
                        "resumes when it returns"
                    )
                self._stuck = None
        job = _Job(call, where, fn)
        self._jobs.put(job)
        if not job.done.wait(self._timeout_s):
            job.abandoned = True  # if it has not started yet, it never will
            with self._lock:
                self._stuck = job
            raise NvmlStuck(
                f"NVML call {call}{_on(where)} took longer than {self._timeout_s:g} s; "
                "the driver may be wedged"
            )
        if job.error is not None:
            raise (job.error if raw else _translate(call, where, job.error)) from None
        result: T = job.result
        return result

    def _call(self, call: str, where: str, *args: object) -> Any:
        fn = getattr(self._lib, call, None)
        if fn is None:
            raise _Missing(f"{call} is missing from this pynvml; update nvidia-ml-py")
        return self._run(call, where, lambda: fn(*args))

    def _optional(
        self,
        call: str,
        where: str,
        fields: Sequence[str],
        out: dict[str, Any],
        *args: object,
    ) -> Any:
        """Call; on Unsupported or another per-field failure note it in `out` and return None.

        GpuLost and NvmlStuck go up: they end the device's reading.
        """
        try:
            return self._call(call, where, *args)
        except (GpuLost, NvmlStuck):
            raise
        except Unsupported:
            out.setdefault("unsupported", set()).update(fields)
        except CollectorError as exc:
            out.setdefault("errors", []).extend((f, str(exc)) for f in fields)
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
        handle = self.handle(nvml_index)
        values: dict[str, Any] = {}
        for key, call in (
            ("name", "nvmlDeviceGetName"),
            ("uuid", "nvmlDeviceGetUUID"),
            ("memory", "nvmlDeviceGetMemoryInfo"),
            ("power_limit", "nvmlDeviceGetEnforcedPowerLimit"),
        ):
            try:
                values[key] = self._call(call, where, handle)
            except NvmlStuck:
                raise
            except CollectorError:
                values[key] = None
        memory = values["memory"]
        try:
            mig = self.mig_enabled(handle, where)
        except NvmlStuck:
            raise
        except CollectorError:
            mig = None
        return GpuStatic(
            nvml_index=nvml_index,
            name=None if values["name"] is None else _text(values["name"]),
            uuid=None if values["uuid"] is None else _text(values["uuid"]),
            total_bytes=None if memory is None else int(memory.total),
            power_limit_mw=None if values["power_limit"] is None else int(values["power_limit"]),
            mig_enabled=mig,
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
        out: dict[str, Any] = {}
        busy = self._optional(
            "nvmlDeviceGetUtilizationRates",
            where,
            ("gpu_utilization_percent", "memory_utilization_percent"),
            out,
            handle,
        )
        values: dict[str, Any] = {}
        if busy is not None:
            values["gpu_utilization_percent"] = int(busy.gpu)
            values["memory_utilization_percent"] = int(busy.memory)
        if whole_gpu:
            values.update(self._whole_gpu(handle, where, out))
        if processes:
            procs = self._optional(
                "nvmlDeviceGetComputeRunningProcesses", where, ("processes",), out, handle
            )
            if procs is not None:
                values["processes"] = tuple(
                    GpuProcess(
                        int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory)
                    )
                    for p in procs
                )
        return GpuReading(
            total_bytes=int(memory.total),
            used_bytes=int(memory.used),
            free_bytes=int(memory.free),
            unsupported=frozenset(out.get("unsupported", ())),
            errors=tuple(out.get("errors", ())),
            **values,
        )

    def _whole_gpu(self, handle: Handle, where: str, out: dict[str, Any]) -> dict[str, Any]:
        lib = pynvml
        simple = (
            ("power_mw", "nvmlDeviceGetPowerUsage", ()),
            ("power_limit_mw", "nvmlDeviceGetEnforcedPowerLimit", ()),
            ("temperature_c", "nvmlDeviceGetTemperature", (lib.NVML_TEMPERATURE_GPU,)),
            ("sm_clock_mhz", "nvmlDeviceGetClockInfo", (lib.NVML_CLOCK_SM,)),
            ("memory_clock_mhz", "nvmlDeviceGetClockInfo", (lib.NVML_CLOCK_MEM,)),
            ("fan_percent", "nvmlDeviceGetFanSpeed", ()),
            ("pcie_tx_bps", "nvmlDeviceGetPcieThroughput", (lib.NVML_PCIE_UTIL_TX_BYTES,)),
            ("pcie_rx_bps", "nvmlDeviceGetPcieThroughput", (lib.NVML_PCIE_UTIL_RX_BYTES,)),
            (
                "ecc_corrected",
                "nvmlDeviceGetTotalEccErrors",
                (lib.NVML_MEMORY_ERROR_TYPE_CORRECTED, lib.NVML_VOLATILE_ECC),
            ),
            (
                "ecc_uncorrected",
                "nvmlDeviceGetTotalEccErrors",
                (lib.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, lib.NVML_VOLATILE_ECC),
            ),
        )
        values: dict[str, Any] = {}
        for key, call, extra in simple:
            value = self._optional(call, where, (key,), out, handle, *extra)
            if value is not None:
                values[key] = int(value) * _PCIE_KB if key.startswith("pcie_") else int(value)
        values["throttle_reasons"] = self._throttle_reasons(handle, where, out)
        return values

    def _throttle_reasons(self, handle: Handle, where: str, out: dict[str, Any]) -> int | None:
        # The "clocks event reasons" call replaced "clocks throttle reasons" in driver 535;
        # older drivers lack it, and the old name goes away in CUDA 14.
        try:
            return int(self._call("nvmlDeviceGetCurrentClocksEventReasons", where, handle))
        except _Missing:
            pass
        except (GpuLost, NvmlStuck):
            raise
        except Unsupported:
            out.setdefault("unsupported", set()).add("throttle_reasons")
            return None
        except CollectorError as exc:
            out.setdefault("errors", []).append(("throttle_reasons", str(exc)))
            return None
        value = self._optional(
            "nvmlDeviceGetCurrentClocksThrottleReasons", where, ("throttle_reasons",), out, handle
        )
        return None if value is None else int(value)

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
