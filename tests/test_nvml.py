"""Nvml: one door to pynvml, every call under a time budget, NVML errors translated once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pynvml
import pytest

from agent.collect.gpu_types import GpuProcess, GpuReading, GpuStatic, XidEvent
from agent.collect.nvml import Nvml, NvmlStuck, NvmlUnavailable, cuda_version_text
from agent.errors import CollectorError, GpuLost, Unsupported
from tests.fakes.nvml import (
    FakeNvml,
    FakeProcess,
    GiB,
    Handle,
    Hang,
    driver_not_loaded,
    hanging,
    library_missing,
    rm_mismatch,
    three_gpus,
)
from tests.helpers import wait_until


@pytest.fixture(name="fake")
def _fake() -> FakeNvml:
    return three_gpus()


@pytest.fixture(name="nvml")
def _nvml(fake: FakeNvml) -> Iterator[Nvml]:
    with Nvml(fake, timeout_s=2.0) as nvml:
        yield nvml


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        (
            library_missing,
            "NVML library libnvidia-ml.so.1 not found; install the NVIDIA driver to sample "
            "GPUs; GPU sampling is off",
        ),
        (
            driver_not_loaded,
            "NVIDIA driver not loaded; load the nvidia kernel module (check with nvidia-smi); "
            "GPU sampling is off",
        ),
        (
            rm_mismatch,
            "NVML library and NVIDIA kernel driver versions differ (driver updated without a "
            "reboot); reboot or reload the nvidia module; GPU sampling is off",
        ),
        (
            lambda: FakeNvml([], init_error=pynvml.NVMLError_NoPermission()),
            "no permission to open /dev/nvidia*; run the agent as root or in the video group; "
            "GPU sampling is off",
        ),
        (
            lambda: FakeNvml([], init_error=pynvml.NVMLError_Unknown()),
            "NVML failed to start: Unknown Error; GPU sampling is off",
        ),
    ],
)
def test_a_failed_start_says_why_and_what_to_do(scenario: object, message: str) -> None:
    """Each way nvmlInit fails becomes NvmlUnavailable, a CollectorError, with its fix."""
    with pytest.raises(NvmlUnavailable) as caught:
        Nvml(scenario(), timeout_s=2.0)  # type: ignore[operator]
    assert str(caught.value) == message
    assert isinstance(caught.value, CollectorError)


def test_init_once_and_shutdown_on_close(fake: FakeNvml) -> None:
    """NVML starts once when the facade is made and shuts down once on close."""
    nvml = Nvml(fake, timeout_s=2.0)
    assert nvml.count() == 3
    nvml.close()
    nvml.close()
    assert fake.calls == ["nvmlInit", "nvmlDeviceGetCount", "nvmlShutdown"]
    with pytest.raises(CollectorError, match="NVML is already shut down"):
        nvml.count()


def test_system_versions(nvml: Nvml) -> None:
    """Driver, CUDA (as major.minor) and NVML versions come back as text."""
    assert nvml.driver_version() == "550.54.15"
    assert nvml.cuda_driver_version() == "12.4"
    assert nvml.nvml_version() == "12.550.54.15"
    assert [cuda_version_text(v) for v in (12040, 11080, 12020, 13000)] == [
        "12.4",
        "11.8",
        "12.2",
        "13.0",
    ]


def test_full_reading(nvml: Nvml, fake: FakeNvml) -> None:
    """Every field of a full-featured GPU, in our units (PCIe KB/s become bytes/s)."""
    fake.gpus[0].processes = [FakeProcess(4242, 3 * GiB), FakeProcess(7, None)]
    fake.now_us = 1_000_000
    first = nvml.read(Handle(0), "GPU 0", processes=True)
    assert (first.pcie_tx_bps, first.pcie_rx_bps) == (None, None)  # a rate needs two counts
    fake.now_us += 2_000_000
    fake.gpus[0].pcie_tx_bytes += 2 * 1_024_000
    fake.gpus[0].pcie_rx_bytes += 2 * 2_048_000
    reading = nvml.read(Handle(0), "GPU 0", processes=True)
    assert reading == GpuReading(
        total_bytes=80 * GiB,
        used_bytes=20 * GiB,
        free_bytes=60 * GiB,
        gpu_utilization_percent=37,
        memory_utilization_percent=12,
        power_mw=250_000,
        power_limit_mw=400_000,
        temperature_c=55,
        sm_clock_mhz=1410,
        memory_clock_mhz=1593,
        fan_percent=None,
        pcie_tx_bps=1_024_000,
        pcie_rx_bps=2_048_000,
        throttle_reasons=0x1,
        ecc_corrected=0,
        ecc_uncorrected=0,
        processes=(GpuProcess(4242, 3 * GiB), GpuProcess(7, None)),
        unsupported=frozenset({"fan_percent"}),
    )


def test_unsupported_fields_are_none_and_named(nvml: Nvml) -> None:
    """A GPU without a power sensor or ECC gives None for those fields, never 0."""
    reading = nvml.read(Handle(1), "GPU 1")
    assert (reading.power_mw, reading.power_limit_mw, reading.ecc_corrected) == (None,) * 3
    assert reading.fan_percent == 30
    assert reading.unsupported == {
        "power_mw",
        "power_limit_mw",
        "ecc_corrected",
        "ecc_uncorrected",
    }
    assert reading.processes is None  # not asked for


def test_mig_instance_reading(nvml: Nvml) -> None:
    """A MIG instance gives memory and processes; its utilisation is unsupported, not 0."""
    reading = nvml.read(Handle(2, 0), "GPU 2 MIG 0", whole_gpu=False, processes=True)
    assert reading == GpuReading(
        total_bytes=40 * GiB,
        used_bytes=10 * GiB,
        free_bytes=30 * GiB,
        processes=(),
        unsupported=frozenset({"gpu_utilization_percent", "memory_utilization_percent"}),
    )


def test_mig_discovery_skips_empty_slots(nvml: Nvml) -> None:
    """MIG mode is read per GPU; instances are listed by their slot, empty slots skipped."""
    assert [nvml.mig_enabled(Handle(i), f"GPU {i}") for i in range(3)] == [False, None, True]
    assert nvml.mig_devices(Handle(2), "GPU 2") == [(0, Handle(2, 0)), (2, Handle(2, 2))]
    assert nvml.uuid(Handle(2, 2), "GPU 2 MIG 2") == "MIG-44444444-eeee-4444-4444-444444444444"


def test_static(nvml: Nvml, fake: FakeNvml) -> None:
    """Static facts of each GPU; what cannot be read is None."""
    fake.gpus[0].name = pynvml.NVMLError_Unknown()
    assert nvml.static(0) == GpuStatic(0, None, fake.gpus[0].uuid, 80 * GiB, 400_000, False)
    assert nvml.static(1) == GpuStatic(
        1, "NVIDIA GeForce RTX 4090", fake.gpus[1].uuid, 24 * GiB, None, None
    )
    assert nvml.static(2).mig_enabled is True
    fake.gpus[2].lost = True
    assert nvml.static(2) == GpuStatic(2, None, None, None, None, None)


def test_errors_are_translated_at_the_edge(nvml: Nvml, fake: FakeNvml) -> None:
    """NVML's exceptions become ours, each naming the call and the device; memory is one field."""
    fake.gpus[0].used_bytes = pynvml.NVMLError_Unknown()
    reading = nvml.read(Handle(0), "GPU 0")
    assert (reading.total_bytes, reading.used_bytes, reading.free_bytes) == (None, None, None)
    assert reading.power_mw == 250_000  # the other fields still read
    assert reading.errors == (
        ("memory", "NVML nvmlDeviceGetMemoryInfo failed on GPU 0: Unknown Error"),
    )

    fake.gpus[0].used_bytes = pynvml.NVMLError_NoPermission()
    reading = nvml.read(Handle(0), "GPU 0")
    assert reading.errors == (
        (
            "memory",
            "nvmlDeviceGetMemoryInfo on GPU 0: permission denied; run the agent as root or "
            "give its user access to /dev/nvidia*",
        ),
    )

    fake.every_call = pynvml.NVMLError_Unknown()
    with pytest.raises(CollectorError) as caught:  # nothing read at all: one failure
        nvml.read(Handle(0), "GPU 0")
    assert str(caught.value) == "NVML nvmlDeviceGetMemoryInfo failed on GPU 0: Unknown Error"
    assert not isinstance(caught.value, Unsupported | GpuLost)
    fake.every_call = None

    fake.gpus[1].lost = True
    with pytest.raises(GpuLost) as lost:
        nvml.read(Handle(1), "GPU 1")
    assert str(lost.value) == (
        "GPU 1 is lost (nvmlDeviceGetMemoryInfo); check nvidia-smi and the kernel log (XID 79)"
    )

    fake.cuda = pynvml.NVMLError_NotSupported()
    with pytest.raises(Unsupported) as unsupported:
        nvml.cuda_driver_version()
    assert str(unsupported.value) == "nvmlSystemGetCudaDriverVersion is not supported"


def test_a_field_failing_otherwise_is_reported_not_fatal(nvml: Nvml, fake: FakeNvml) -> None:
    """An Unknown error on an optional field leaves it None with its message; memory still reads."""
    fake.gpus[0].temperature_c = pynvml.NVMLError_Unknown()
    reading = nvml.read(Handle(0), "GPU 0")
    assert reading.temperature_c is None
    assert reading.used_bytes == 20 * GiB
    assert reading.errors == (
        ("temperature_c", "NVML nvmlDeviceGetTemperatureV failed on GPU 0: Unknown Error"),
    )
    assert "temperature_c" not in reading.unsupported


def test_lost_mid_reading_ends_the_reading(nvml: Nvml, fake: FakeNvml) -> None:
    """GpuIsLost on an optional field is not swallowed: the whole device is lost."""
    fake.gpus[0].fan_percent = pynvml.NVMLError_GpuIsLost()
    with pytest.raises(GpuLost):
        nvml.read(Handle(0), "GPU 0")


def test_old_driver_falls_back_to_the_throttle_reasons_call(nvml: Nvml, fake: FakeNvml) -> None:
    """Drivers before 535 lack nvmlDeviceGetCurrentClocksEventReasons; the old name is used."""
    fake.old_driver = True
    fake.gpus[0].throttle_reasons = 0x4
    assert nvml.read(Handle(0), "GPU 0").throttle_reasons == 0x4
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in fake.calls


def test_xid_events(nvml: Nvml, fake: FakeNvml) -> None:
    """XID events are registered where supported and drained without waiting."""
    where = nvml.watch_xid([(Handle(i), f"GPU {i}") for i in range(3)])
    assert where == ["GPU 0", "GPU 2"]  # GPU 1 has no event support: skipped quietly
    assert nvml.poll_xid().events == []
    fake.xid_queue += [(0, 79), (1, 13), (2, 48)]
    assert nvml.poll_xid().events == [
        XidEvent(fake.gpus[0].uuid, 79),
        XidEvent(fake.gpus[2].uuid, 48),
    ]
    assert nvml.poll_xid().events == []
    nvml.close()
    assert fake.calls[-2:] == ["nvmlEventSetFree", "nvmlShutdown"]


def test_a_hung_call_returns_within_the_budget() -> None:
    """A wedged call costs the caller the budget; later calls fail fast until it returns."""
    fake, hang = hanging("temperature_c", gpu=1)
    with Nvml(fake, timeout_s=1.0) as nvml:
        started = time.monotonic()
        with pytest.raises(NvmlStuck) as caught:
            nvml.read(Handle(1), "GPU 1")
        assert time.monotonic() - started < 3
        assert str(caught.value) == (
            "NVML call nvmlDeviceGetTemperatureV on GPU 1 took longer than 1 s; "
            "the driver may be wedged"
        )
        assert nvml.stuck
        started = time.monotonic()
        with pytest.raises(NvmlStuck) as again:
            nvml.read(Handle(0), "GPU 0")
        assert time.monotonic() - started < 0.5  # failed fast, without waiting again
        assert str(again.value) == (
            "NVML call nvmlDeviceGetTemperatureV on GPU 1 has not returned after 1 s; the "
            "driver may be wedged; GPU sampling resumes when it returns"
        )
        hang.release.set()
        wait_until(lambda: not nvml.stuck, timeout_s=5)
        assert nvml.read(Handle(0), "GPU 0").temperature_c == 55


def test_a_hung_init_is_unavailable() -> None:
    """nvmlInit that never returns leaves GPU sampling off, within the budget."""
    fake = FakeNvml([])
    hang = Hang(None)
    fake.nvmlInit = hang.read  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(NvmlUnavailable) as caught:
        Nvml(fake, timeout_s=0.2)
    assert time.monotonic() - started < 1.5
    assert str(caught.value) == (
        "NVML call nvmlInit took longer than 0.2 s; the driver may be wedged; GPU sampling is off"
    )
    hang.release.set()


def test_close_while_stuck_skips_shutdown() -> None:
    """close() does not wait on a wedged driver: nvmlShutdown is skipped."""
    fake, hang = hanging("power_mw", gpu=0)
    nvml = Nvml(fake, timeout_s=0.1)
    with pytest.raises(NvmlStuck):
        nvml.read(Handle(0), "GPU 0")
    started = time.monotonic()
    nvml.close()
    assert time.monotonic() - started < 0.5
    hang.release.set()
    assert "nvmlShutdown" not in fake.calls
