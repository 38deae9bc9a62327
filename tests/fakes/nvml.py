"""A fake pynvml: only the functions agent/collect/nvml.py calls, raising NVML's own exceptions.

Each GPU is a ``FakeGpu``; a field holding an exception instance raises it
when the call that reads it runs, and a field holding a ``Hang`` blocks until
the test releases it. ``FakeNvml`` is passed where the agent takes ``lib=``.
The exception classes come from the real ``pynvml`` (``nvidia-ml-py``
installs without a driver), so the agent's translation runs in every test.

Return types are the real ones' shapes: memory and utilisation structs with
the attribute names of ``c_nvmlMemory_t`` and ``c_nvmlUtilization_t``, field
values with ``nvmlReturn``/``timestamp``/``value.ullVal`` as
``c_nvmlFieldValue_t``, events with ``device``/``eventData``/
``gpuInstanceId``/``computeInstanceId`` as ``c_nvmlEventData_t``.

Driver generations (``driver=``), as nvidia-ml-py 13's pynvml.py behaves on them:
- ``"r470"``: no ``…_v3`` symbol, so ``nvmlDeviceGetComputeRunningProcesses``
  raises ``NVMLLibraryMismatchError`` (pynvml's @throwOnVersionMismatch; not
  an ``NVMLError``) while ``_v2`` works; no ClocksEventReasons (R535), no
  TemperatureV, and the PCIe byte-counter fields answer NOT_SUPPORTED.
- ``"r535"``: all of those but TemperatureV (FunctionNotFound).
- ``"r580"`` (default, NVML 13): everything; ``nvmlDeviceGetTemperature`` still
  answers but is deprecated (announced for removal in CUDA 14).

Named scenarios at the bottom: ``three_gpus()``, ``library_missing()``,
``driver_not_loaded()``, ``rm_mismatch()``, ``every_call_unknown()``,
``hanging(field)``, ``mig_non_root()``, ``r470()``, ``eight_gpus()``,
``host_pids()``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

GiB = 2**30
NOT_SUPPORTED = pynvml.NVMLError_NotSupported


class Hang:
    """A value that blocks its reader until `release` is set (a wedged driver)."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.started = threading.Event()
        self.release = threading.Event()

    def read(self) -> object:
        self.started.set()
        self.release.wait(timeout=60)  # bounded, so a forgotten release cannot hang the suite
        return self.value


def _get(value: object) -> Any:
    if isinstance(value, Hang):
        value = value.read()
    if isinstance(value, Exception):
        raise value
    return value


@dataclass
class FakeProcess:
    """A process with a compute context: host pid and GPU memory in bytes."""

    pid: int
    used_bytes: int | None


@dataclass
class FakeMig:
    """A MIG instance: memory, utilisation (often unsupported), processes."""

    uuid: str
    total_bytes: int = 10 * GiB
    used_bytes: int = 1 * GiB
    utilization: tuple[int, int] | Exception = field(default_factory=NOT_SUPPORTED)
    processes: list[FakeProcess] | Exception = field(default_factory=list)


@dataclass
class FakeGpu:
    """One GPU; a field holding an exception instance raises it, a Hang blocks."""

    uuid: str
    name: str | Exception = "NVIDIA A100-SXM4-80GB"
    total_bytes: int = 80 * GiB
    used_bytes: int | Exception | Hang = 20 * GiB
    utilization: tuple[int, int] | Exception | Hang = (37, 12)  # (gpu %, memory %)
    power_mw: int | Exception | Hang = 250_000
    power_limit_mw: int | Exception = 400_000
    temperature_c: int | Exception | Hang = 55
    sm_clock_mhz: int | Exception = 1410
    memory_clock_mhz: int | Exception = 1593
    fan_percent: int | Exception = field(default_factory=NOT_SUPPORTED)
    pcie_tx_kbs: int | Exception = 1000
    pcie_rx_kbs: int | Exception = 2000
    pcie_tx_bytes: int = 0  # the byte counters behind NVML_FI_DEV_PCIE_COUNT_{TX,RX}_BYTES
    pcie_rx_bytes: int = 0
    throttle_reasons: int | Exception = 0x1  # idle
    ecc_corrected: int | Exception = 0
    ecc_uncorrected: int | Exception = 0
    processes: list[FakeProcess] | Exception = field(default_factory=list)
    mig_mode: tuple[int, int] | Exception = (0, 0)
    migs: list[FakeMig | None] = field(default_factory=list)  # None: an empty slot
    mig_generation: int = 0  # bumped when the instances are re-created: old handles go stale
    events: bool | Exception = True  # whether XID events can be registered (or what it raises)
    lost: bool = False  # every call raises GpuIsLost


@dataclass(frozen=True)
class Handle:
    """A device handle: the GPU's NVML index, and the MIG slot for an instance."""

    index: int
    mig: int | None = None
    generation: int = 0


class FakeNvml:
    """The pynvml functions the agent calls, over a list of FakeGpu."""

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        init_error: Exception | None = None,
        driver: str = "r580",
        latency_s: float = 0.0,
    ) -> None:
        self.gpus = gpus
        self.generation = driver
        self.latency_s = latency_s  # each call's time; the PCIe throughput call takes 20 ms more
        self.event_sets_freed = 0
        self.now_us: int | None = None  # the field values' timestamp; None: the real clock
        self.lost_after_events = False  # nvmlEventSetWait raises GpuIsLost once the queue is empty
        self.init_error = init_error
        self.every_call: Exception | None = None  # set to make every call after init raise
        self.calls: list[str] = []
        # (NVML index, xid[, gpu instance, compute instance]) waiting to be polled
        self.xid_queue: list[tuple[int, ...]] = []
        self.registered: set[int] = set()
        self.driver: str | Exception = "550.54.15"
        self.cuda: int | Exception = 12040
        self.nvml = "12.550.54.15"
        # An old driver (before 535) lacks the newer name of the throttle-reasons call.
        self.old_driver = driver == "r470"

    def _enter(self, call: str, handle: Handle | None = None) -> FakeGpu | None:
        self.calls.append(call)
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.every_call is not None:
            raise self.every_call
        if handle is None:
            return None
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        if handle.mig is not None and handle.generation != gpu.mig_generation:
            raise pynvml.NVMLError_InvalidArgument()  # the instance was destroyed or re-created
        return gpu

    def _mig(self, handle: Handle) -> FakeMig | None:
        gpu = self.gpus[handle.index]
        return None if handle.mig is None else gpu.migs[handle.mig]

    # -- lifecycle and system --
    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return _get(self.driver)

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return _get(self.cuda)

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return self.nvml

    # -- devices --
    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if index >= len(self.gpus):
            raise pynvml.NVMLError_InvalidArgument()
        return Handle(index)

    def nvmlDeviceGetUUID(self, handle: Handle) -> str:
        gpu = self._enter("nvmlDeviceGetUUID", handle)
        mig = self._mig(handle)
        return mig.uuid if mig else _get(gpu.uuid)

    def nvmlDeviceGetName(self, handle: Handle) -> str:
        return _get(self._enter("nvmlDeviceGetName", handle).name)

    def nvmlDeviceGetMemoryInfo(self, handle: Handle) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetMemoryInfo", handle)
        src: Any = self._mig(handle) or gpu
        used, total = _get(src.used_bytes), _get(src.total_bytes)
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle: Handle) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetUtilizationRates", handle)
        busy, memory = _get((self._mig(handle) or gpu).utilization)
        return SimpleNamespace(gpu=busy, memory=memory)

    def _field(self, call: str, handle: Handle, name: str) -> Any:
        gpu = self._enter(call, handle)
        if handle.mig is not None:
            raise pynvml.NVMLError_NotSupported()
        return _get(getattr(gpu, name))

    def nvmlDeviceGetPowerUsage(self, handle: Handle) -> int:
        return self._field("nvmlDeviceGetPowerUsage", handle, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Handle) -> int:
        return self._field("nvmlDeviceGetEnforcedPowerLimit", handle, "power_limit_mw")

    def nvmlDeviceGetTemperature(self, handle: Handle, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._field("nvmlDeviceGetTemperature", handle, "temperature_c")

    def nvmlDeviceGetTemperatureV(self, handle: Handle, sensor: int) -> int:
        if self.generation in ("r470", "r535"):
            self.calls.append("nvmlDeviceGetTemperatureV")
            raise pynvml.NVMLError_FunctionNotFound()
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._field("nvmlDeviceGetTemperatureV", handle, "temperature_c")

    def nvmlDeviceGetFieldValues(self, handle: Handle, field_ids: list[int]) -> list[Any]:
        gpu = self._enter("nvmlDeviceGetFieldValues", handle)
        counters = {
            pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: "pcie_tx_bytes",
            pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: "pcie_rx_bytes",
        }
        now_us = self.now_us if self.now_us is not None else time.time_ns() // 1000
        out = []
        for fid in field_ids:
            supported = self.generation != "r470" and handle.mig is None and fid in counters
            count = getattr(gpu, counters[fid]) if supported else 0
            out.append(
                SimpleNamespace(
                    fieldId=fid,
                    scopeId=0,
                    timestamp=now_us,
                    latencyUsec=0,
                    valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
                    nvmlReturn=pynvml.NVML_SUCCESS
                    if supported
                    else pynvml.NVML_ERROR_NOT_SUPPORTED,
                    value=SimpleNamespace(ullVal=count),
                )
            )
        return out

    def nvmlDeviceGetClockInfo(self, handle: Handle, kind: int) -> int:
        name = {pynvml.NVML_CLOCK_SM: "sm_clock_mhz", pynvml.NVML_CLOCK_MEM: "memory_clock_mhz"}
        return self._field("nvmlDeviceGetClockInfo", handle, name[kind])

    def nvmlDeviceGetFanSpeed(self, handle: Handle) -> int:
        return self._field("nvmlDeviceGetFanSpeed", handle, "fan_percent")

    def nvmlDeviceGetPcieThroughput(self, handle: Handle, counter: int) -> int:
        name = {
            pynvml.NVML_PCIE_UTIL_TX_BYTES: "pcie_tx_kbs",
            pynvml.NVML_PCIE_UTIL_RX_BYTES: "pcie_rx_kbs",
        }
        if self.latency_s:
            time.sleep(0.02)
        return self._field("nvmlDeviceGetPcieThroughput", handle, name[counter])

    def nvmlDeviceGetTotalEccErrors(self, handle: Handle, kind: int, counter: int) -> int:
        assert counter == pynvml.NVML_VOLATILE_ECC
        name = {
            pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: "ecc_corrected",
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: "ecc_uncorrected",
        }
        return self._field("nvmlDeviceGetTotalEccErrors", handle, name[kind])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Handle) -> int:
        if self.old_driver:
            self.calls.append("nvmlDeviceGetCurrentClocksEventReasons")
            raise pynvml.NVMLError_FunctionNotFound()
        return self._field("nvmlDeviceGetCurrentClocksEventReasons", handle, "throttle_reasons")

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Handle) -> int:
        return self._field("nvmlDeviceGetCurrentClocksThrottleReasons", handle, "throttle_reasons")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Handle) -> list[SimpleNamespace]:
        if self.generation == "r470":
            # pynvml binds this to _v3 under @throwOnVersionMismatch: on R470 the symbol is
            # missing and the decorator turns FunctionNotFound into this plain Exception.
            self.calls.append("nvmlDeviceGetComputeRunningProcesses")
            raise pynvml.NVMLLibraryMismatchError(
                "Unversioned function called and the pyNVML version does not match the NVML "
                "lib version. Either use matching pyNVML and NVML lib versions or use a "
                "versioned function such as nvmlDeviceGetComputeRunningProcesses_v2"
            )
        return self._processes("nvmlDeviceGetComputeRunningProcesses", handle)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: Handle) -> list[SimpleNamespace]:
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v2", handle)

    def _processes(self, call: str, handle: Handle) -> list[SimpleNamespace]:
        gpu = self._enter(call, handle)
        procs = _get((self._mig(handle) or gpu).processes)
        return [SimpleNamespace(pid=p.pid, usedGpuMemory=p.used_bytes) for p in procs]

    # -- MIG --
    def nvmlDeviceGetMigMode(self, handle: Handle) -> list[int]:
        return list(_get(self._enter("nvmlDeviceGetMigMode", handle).mig_mode))

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Handle) -> int:
        gpu = self._enter("nvmlDeviceGetMaxMigDeviceCount", handle)
        return 7 if gpu.migs else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, index: int) -> Handle:
        gpu = self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if index >= len(gpu.migs) or gpu.migs[index] is None:
            raise pynvml.NVMLError_NotFound()
        return Handle(handle.index, index, gpu.mig_generation)

    def reconfigure_mig(self, index: int, migs: list[FakeMig | None]) -> None:
        """Destroy and re-create GPU `index`'s MIG instances: the old handles go stale."""
        self.gpus[index].migs = migs
        self.gpus[index].mig_generation += 1

    # -- events --
    def nvmlEventSetCreate(self) -> str:
        self._enter("nvmlEventSetCreate")
        return "event-set"

    def nvmlDeviceRegisterEvents(self, handle: Handle, kinds: int, event_set: str) -> None:
        gpu = self._enter("nvmlDeviceRegisterEvents", handle)
        assert kinds == pynvml.nvmlEventTypeXidCriticalError and event_set == "event-set"
        if isinstance(gpu.events, Exception):
            self.registered.clear()  # nvml.h: the event set is undefined after a failure
            raise gpu.events
        if not gpu.events:
            raise pynvml.NVMLError_NotSupported()
        self.registered.add(handle.index)

    def nvmlEventSetWait(self, event_set: str, timeout_ms: int) -> SimpleNamespace:
        self._enter("nvmlEventSetWait")
        assert timeout_ms == 0  # polled: the agent never waits for events
        while self.xid_queue:
            entry = self.xid_queue.pop(0)
            index, xid = entry[0], entry[1]
            gi, ci = (entry[2], entry[3]) if len(entry) > 2 else (0xFFFFFFFF, 0xFFFFFFFF)
            if index in self.registered:
                return SimpleNamespace(
                    device=Handle(index),
                    eventType=pynvml.nvmlEventTypeXidCriticalError,
                    eventData=xid,
                    gpuInstanceId=gi,
                    computeInstanceId=ci,
                )
        if self.lost_after_events:
            raise pynvml.NVMLError_GpuIsLost()
        raise pynvml.NVMLError_Timeout()

    def nvmlEventSetFree(self, event_set: str) -> None:
        self._enter("nvmlEventSetFree")
        self.event_sets_freed += 1


# -- named scenarios ----------------------------------------------------------------------------

UUIDS = (
    "GPU-00000000-aaaa-0000-0000-000000000000",
    "GPU-11111111-bbbb-1111-1111-111111111111",
    "GPU-22222222-cccc-2222-2222-222222222222",
)
MIG_UUIDS = (
    "MIG-33333333-dddd-3333-3333-333333333333",
    "MIG-44444444-eeee-4444-4444-444444444444",
)


def three_gpus() -> FakeNvml:
    """GPU 0 full-featured; GPU 1 without power sensor or ECC; GPU 2 in MIG mode, 2 instances."""
    return FakeNvml(
        [
            FakeGpu(UUIDS[0]),
            FakeGpu(
                UUIDS[1],
                name="NVIDIA GeForce RTX 4090",
                total_bytes=24 * GiB,
                used_bytes=6 * GiB,
                utilization=(90, 40),
                power_mw=NOT_SUPPORTED(),
                power_limit_mw=NOT_SUPPORTED(),
                fan_percent=30,
                ecc_corrected=NOT_SUPPORTED(),
                ecc_uncorrected=NOT_SUPPORTED(),
                mig_mode=NOT_SUPPORTED(),
                events=False,
            ),
            FakeGpu(
                UUIDS[2],
                used_bytes=2 * GiB,
                utilization=NOT_SUPPORTED(),
                mig_mode=(1, 1),
                migs=[
                    FakeMig(MIG_UUIDS[0], total_bytes=40 * GiB, used_bytes=10 * GiB),
                    None,
                    FakeMig(MIG_UUIDS[1], total_bytes=20 * GiB, used_bytes=5 * GiB),
                ],
            ),
        ]
    )


def library_missing() -> FakeNvml:
    """No libnvidia-ml.so.1: a machine without the NVIDIA driver."""
    return FakeNvml([], init_error=pynvml.NVMLError_LibraryNotFound())


def driver_not_loaded() -> FakeNvml:
    """The library is there, the kernel module is not."""
    return FakeNvml([], init_error=pynvml.NVMLError_DriverNotLoaded())


def rm_mismatch() -> FakeNvml:
    """The driver was upgraded and the old kernel module still runs."""
    return FakeNvml([], init_error=pynvml.NVMLError_LibRmVersionMismatch())


def hanging(field_name: str, gpu: int = 1) -> tuple[FakeNvml, Hang]:
    """Three GPUs where reading `field_name` of GPU `gpu` blocks until the Hang is released."""
    fake = three_gpus()
    hang = Hang(getattr(fake.gpus[gpu], field_name))
    setattr(fake.gpus[gpu], field_name, hang)
    return fake, hang


def every_call_unknown() -> FakeNvml:
    """NVML starts, then every call fails with Unknown."""
    fake = three_gpus()
    fake.every_call = pynvml.NVMLError_Unknown()
    return fake


def mig_non_root() -> FakeNvml:
    """An H100 in MIG mode read by an unprivileged user: the parent's memory is refused.

    nvml.h, nvmlDeviceGetMemoryInfo: on a MIG-enabled GPU it "returns aggregate
    information, only if the caller has appropriate privileges"; utilisation
    is NOT_SUPPORTED on the instances.
    """
    denied = pynvml.NVMLError_NoPermission
    return FakeNvml(
        [
            FakeGpu(
                UUIDS[0],
                name="NVIDIA H100 80GB HBM3",
                used_bytes=denied(),
                utilization=NOT_SUPPORTED(),
                mig_mode=(1, 1),
                migs=[
                    FakeMig(MIG_UUIDS[0], total_bytes=40 * GiB, used_bytes=10 * GiB),
                    FakeMig(MIG_UUIDS[1], total_bytes=20 * GiB, used_bytes=5 * GiB),
                ],
            )
        ]
    )


def r470() -> FakeNvml:
    """Two GPUs on an R470 driver under nvidia-ml-py 13 (see the module docstring)."""
    return FakeNvml([FakeGpu(UUIDS[0]), FakeGpu(UUIDS[1])], driver="r470")


def eight_gpus(latency_s: float = 0.0) -> FakeNvml:
    """An 8-GPU H200 board (SXM: no fan), each call taking `latency_s`."""
    uuids = [f"GPU-{i}{i}{i}{i}{i}{i}{i}{i}-ffff-0000-0000-00000000000{i}" for i in range(8)]
    return FakeNvml(
        [FakeGpu(u, name="NVIDIA H200", total_bytes=141 * GiB) for u in uuids],
        latency_s=latency_s,
    )


def host_pids() -> FakeNvml:
    """One GPU whose processes carry host pids, as older drivers report them in a container."""
    return FakeNvml(
        [
            FakeGpu(
                UUIDS[0], processes=[FakeProcess(4_000_001, 3 * GiB), FakeProcess(4_000_002, GiB)]
            )
        ]
    )
