"""The GPU sampler and static facts, on the fake NVML: exact metrics, bodies, events, failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from agent.api import bodies
from agent.api.client import CometClient
from agent.collect.base import HealthEvent, Sample
from agent.collect.gpu import GpuSampler, gpu_sampler, read_gpu_facts
from agent.collect.gpu_devices import GpuIdentity, discover, select_devices
from agent.collect.nvml import Nvml, NvmlUnavailable
from agent.config import Settings
from agent.errors import CollectorError, GpuLost
from agent.lifecycle.samples import typed_bodies
from tests.fakes.comet_server import CometStandIn
from tests.fakes.nvml import (
    MIG_UUIDS,
    UUIDS,
    FakeNvml,
    FakeProcess,
    GiB,
    every_call_unknown,
    hanging,
    library_missing,
    three_gpus,
)
from tests.helpers import CANARY_KEY, wait_until

TS = 1_700_000_000_000
KEY = "0123456789abcdef0123456789abcdef"


def make(
    fake: FakeNvml,
    *,
    environ: dict[str, str] | None = None,
    watched: set[int] | None = None,
    timeout_s: float = 2.0,
    proc: Path = Path("/proc"),
) -> tuple[GpuSampler | None, list[str]]:
    """Build the sampler as the daemon would; return it and the reasons it gave for None."""
    reasons: list[str] = []
    sampler = gpu_sampler(
        Settings(nvml_timeout_s=timeout_s),
        lib=fake,
        watched_pids=None if watched is None else (lambda: watched),
        environ=environ or {},
        clock=lambda: TS,
        on_unavailable=reasons.append,
        proc=proc,
    )
    return sampler, reasons


@pytest.fixture(name="fake")
def _fake() -> FakeNvml:
    return three_gpus()


@pytest.fixture(name="sampler")
def _sampler(fake: FakeNvml) -> Iterator[GpuSampler]:
    sampler, reasons = make(fake)
    assert sampler is not None, reasons
    yield sampler
    sampler.close()


def whole_gpu(i: int, *, total: int, used: int, util: tuple[int, int] | None) -> dict[str, object]:
    """The metrics every whole GPU of the fake sends (before per-GPU differences)."""
    out: dict[str, object] = {
        f"sys.gpu.{i}.total_memory": total,
        f"sys.gpu.{i}.used_memory": used,
        f"sys.gpu.{i}.free_memory": total - used,
        f"sys.gpu.{i}.percent.used_memory": used / total * 100,
        f"sys.gpu.{i}.temperature": 55,
        f"sys.gpu.{i}.clock_sm": 1410,
        f"sys.gpu.{i}.clock_memory": 1593,
        f"sys.gpu.{i}.throttle_reasons": 1,
        f"sys.gpu.{i}.throttled": 0,
    }
    if util:
        out[f"sys.gpu.{i}.gpu_utilization"] = util[0]
        out[f"sys.gpu.{i}.memory_utilization"] = util[1]
    return out


FIRST_METRICS: dict[str, object] = {
    **whole_gpu(0, total=80 * GiB, used=20 * GiB, util=(37, 12)),
    "sys.gpu.0.power_usage": 250_000,
    "sys.gpu.0.power_limit": 400_000,
    "sys.gpu.0.ecc_corrected": 0,
    "sys.gpu.0.ecc_uncorrected": 0,
    **whole_gpu(1, total=24 * GiB, used=6 * GiB, util=(90, 40)),
    "sys.gpu.1.fan_speed": 30,
    **whole_gpu(2, total=80 * GiB, used=2 * GiB, util=None),
    "sys.gpu.2.power_usage": 250_000,
    "sys.gpu.2.power_limit": 400_000,
    "sys.gpu.2.ecc_corrected": 0,
    "sys.gpu.2.ecc_uncorrected": 0,
    "sys.gpu.2.mig.0.total_memory": 40 * GiB,
    "sys.gpu.2.mig.0.used_memory": 10 * GiB,
    "sys.gpu.2.mig.0.free_memory": 30 * GiB,
    "sys.gpu.2.mig.0.percent.used_memory": 25.0,
    "sys.gpu.2.mig.2.total_memory": 20 * GiB,
    "sys.gpu.2.mig.2.used_memory": 5 * GiB,
    "sys.gpu.2.mig.2.free_memory": 15 * GiB,
    "sys.gpu.2.mig.2.percent.used_memory": 25.0,
}
UNSUPPORTED = {
    "gpu.0.fan_speed",
    "gpu.1.power_usage",
    "gpu.1.power_limit",
    "gpu.1.ecc_corrected",
    "gpu.1.ecc_uncorrected",
    "gpu.2.fan_speed",
    "gpu.2.gpu_utilization",
    "gpu.2.memory_utilization",
    "gpu.2.mig.0.gpu_utilization",
    "gpu.2.mig.0.memory_utilization",
    "gpu.2.mig.2.gpu_utilization",
    "gpu.2.mig.2.memory_utilization",
}


def test_first_sample(sampler: GpuSampler) -> None:
    """Three GPUs (one without power sensor, one in MIG mode): every metric, exact."""
    sample = sampler.collect()
    assert sample.timestamp_ms == TS
    assert dict(sample.metrics) == FIRST_METRICS
    assert sample.unsupported == UNSUPPORTED
    assert sample.events == []
    # The typed body: whole GPUs that report utilisation; the MIG-mode GPU has none, so it
    # is left out rather than sent as 0.
    assert typed_bodies(sample) == {
        "add-gpu-metrics": {
            "gpus": [
                {
                    "gpuId": 0,
                    "freeMemory": 60 * GiB,
                    "usedMemory": 20 * GiB,
                    "totalMemory": 80 * GiB,
                    "gpuUtilization": 37,
                },
                {
                    "gpuId": 1,
                    "freeMemory": 18 * GiB,
                    "usedMemory": 6 * GiB,
                    "totalMemory": 24 * GiB,
                    "gpuUtilization": 90,
                },
            ],
            "timestamp": TS,
        }
    }


def test_repeated_samples_follow_the_device(sampler: GpuSampler, fake: FakeNvml) -> None:
    """Later samples carry new values; total_memory is sent once, as the SDK does; PCIe rates
    come from NVML's byte counters, so from the second sample on (never a made-up 0 first)."""
    fake.now_us = 5_000_000
    sampler.collect()
    fake.gpus[0].used_bytes = 40 * GiB
    fake.gpus[0].utilization = (99, 70)
    fake.now_us += 2_000_000
    for gpu in fake.gpus:
        gpu.pcie_tx_bytes += 2 * 1_024_000
        gpu.pcie_rx_bytes += 2 * 2_048_000
    sample = sampler.collect()
    expected = {k: v for k, v in FIRST_METRICS.items() if not k.endswith(".total_memory")}
    for i in range(3):
        expected |= {f"sys.gpu.{i}.pcie_tx_bps": 1_024_000, f"sys.gpu.{i}.pcie_rx_bps": 2_048_000}
    expected |= {
        "sys.gpu.0.used_memory": 40 * GiB,
        "sys.gpu.0.free_memory": 40 * GiB,
        "sys.gpu.0.percent.used_memory": 50.0,
        "sys.gpu.0.gpu_utilization": 99,
        "sys.gpu.0.memory_utilization": 70,
    }
    assert dict(sample.metrics) == expected
    assert typed_bodies(sample)["add-gpu-metrics"]["gpus"][0] == {  # type: ignore[index]
        "gpuId": 0,
        "freeMemory": 40 * GiB,
        "usedMemory": 40 * GiB,
        "totalMemory": 80 * GiB,
        "gpuUtilization": 99,
    }


def test_process_memory_of_the_watched_tree(fake: FakeNvml, tmp_path: Path) -> None:
    """Only the watched pids count; other tenants' memory (their pids in /proc) is not ours."""
    for pid in (9, 100, 101):
        (tmp_path / str(pid)).mkdir()
    fake.gpus[0].processes = [FakeProcess(100, 3 * GiB), FakeProcess(101, GiB), FakeProcess(9, GiB)]
    fake.gpus[1].processes = [FakeProcess(9, 5 * GiB)]
    fake.gpus[2].migs[2].processes = [FakeProcess(101, 2 * GiB)]  # type: ignore[union-attr]
    sampler, _ = make(fake, watched={100, 101}, proc=tmp_path)
    assert sampler is not None
    metrics = sampler.collect().metrics
    sampler.close()
    assert {k: v for k, v in metrics.items() if k.endswith("process_memory")} == {
        "sys.gpu.0.process_memory": 4 * GiB,
        "sys.gpu.1.process_memory": 0,
        "sys.gpu.2.process_memory": 0,
        "sys.gpu.2.mig.0.process_memory": 0,
        "sys.gpu.2.mig.2.process_memory": 2 * GiB,
    }


def test_a_failing_pid_source_skips_process_memory_only(fake: FakeNvml) -> None:
    """When the watched tree cannot be read, process_memory is left out and said once."""

    def broken() -> set[int]:
        raise CollectorError("/proc/4242/task: cannot read")

    sampler = gpu_sampler(Settings(), lib=fake, watched_pids=broken, environ={}, clock=lambda: TS)
    assert sampler is not None
    first, second = sampler.collect(), sampler.collect()
    sampler.close()
    assert not any(name.endswith("process_memory") for name in first.metrics)
    assert first.metrics["sys.gpu.0.used_memory"] == 20 * GiB
    assert [e.message for e in first.events] == ["/proc/4242/task: cannot read"]
    assert second.events == []


def test_total_memory_once_per_device(sampler: GpuSampler, fake: FakeNvml) -> None:
    """A GPU that failed its first sample sends total_memory with its first good one."""
    fake.gpus[1].used_bytes = pynvml.NVMLError_Unknown()
    assert "sys.gpu.1.total_memory" not in sampler.collect().metrics
    fake.gpus[1].used_bytes = 6 * GiB
    metrics = sampler.collect().metrics
    assert metrics["sys.gpu.1.total_memory"] == 24 * GiB
    assert "sys.gpu.0.total_memory" not in metrics


def test_process_memory_unknown_is_left_out(fake: FakeNvml) -> None:
    """A watched process whose GPU memory NVML cannot tell makes the sum unknown, not smaller."""
    fake.gpus[0].processes = [FakeProcess(100, GiB), FakeProcess(101, None)]
    fake.gpus[1].processes = pynvml.NVMLError_NotSupported()
    sampler, _ = make(fake, watched={100, 101})
    assert sampler is not None
    sample = sampler.collect()
    sampler.close()
    assert "sys.gpu.0.process_memory" not in sample.metrics
    assert "sys.gpu.1.process_memory" not in sample.metrics
    assert "gpu.1.process_memory" in sample.unsupported


# -- CUDA_VISIBLE_DEVICES -------------------------------------------------------------------------

IDS = [
    GpuIdentity(0, UUIDS[0]),
    GpuIdentity(1, UUIDS[1]),
    GpuIdentity(2, UUIDS[2], ((0, MIG_UUIDS[0]), (2, MIG_UUIDS[1]))),
]


@pytest.mark.parametrize(
    ("visible", "chosen", "note"),
    [
        (None, [(0, None), (1, None), (2, None)], None),
        ("", [], None),
        ("-1", [], None),
        ("2,0", [(2, None), (0, None)], None),
        (" 1 , 0 ", [(1, None), (0, None)], None),
        (f"{UUIDS[1]},0", [(1, None), (0, None)], None),
        ("GPU-2222", [(2, None)], None),  # a unique prefix, as CUDA accepts
        (MIG_UUIDS[1], [(2, (2,))], None),
        (f"{MIG_UUIDS[1]},{MIG_UUIDS[0]},0", [(2, (2, 0)), (0, None)], None),
        ("0,0", [(0, None)], None),
        (
            "1,7,0",
            [(1, None)],
            "CUDA_VISIBLE_DEVICES: entry '7' is not a GPU index (NVML sees 3); it and later "
            "entries are ignored, as CUDA does",
        ),
        (
            "GPU-,1",
            [],
            "CUDA_VISIBLE_DEVICES: entry 'GPU-' matches more than one device; it and later "
            "entries are ignored, as CUDA does",
        ),
        (
            "0,GPU-ffff",
            [(0, None)],
            "CUDA_VISIBLE_DEVICES: entry 'GPU-ffff' matches no device; it and later entries "
            "are ignored, as CUDA does",
        ),
        (
            "cuda0",
            [],
            "CUDA_VISIBLE_DEVICES: entry 'cuda0' is neither an index nor a GPU-/MIG- UUID; it "
            "and later entries are ignored, as CUDA does",
        ),
    ],
)
def test_select_devices(
    visible: str | None, chosen: list[tuple[int, tuple[int, ...] | None]], note: str | None
) -> None:
    """CUDA_VISIBLE_DEVICES picks and orders GPUs by index, UUID (or prefix) and MIG UUID."""
    assert select_devices(visible, IDS) == (chosen, note)


def test_visible_by_index_renumbers(fake: FakeNvml) -> None:
    """<i> is the position among reported GPUs: CUDA_VISIBLE_DEVICES=2,0 makes NVML 2 gpu.0."""
    sampler, _ = make(fake, environ={"CUDA_VISIBLE_DEVICES": "2,0"})
    assert sampler is not None
    sample = sampler.collect()
    facts = sampler.facts()
    sampler.close()
    assert sample.metrics["sys.gpu.0.used_memory"] == 2 * GiB
    assert sample.metrics["sys.gpu.0.mig.2.used_memory"] == 5 * GiB
    assert sample.metrics["sys.gpu.1.used_memory"] == 20 * GiB
    assert not any(name.startswith("sys.gpu.2") for name in sample.metrics)
    assert typed_bodies(sample)["add-gpu-metrics"]["gpus"][0]["gpuId"] == 1  # type: ignore[index]
    assert [d.device.label for d in sampler.devices] == [
        "GPU 0 (nvidia-smi 2)",
        "GPU 1 (nvidia-smi 0)",
    ]
    assert {"key": "sys.gpu.0", "value": UUIDS[2]} in facts.additional
    assert {"key": "cuda_visible_devices", "value": "2,0"} in facts.additional


def test_visible_by_uuid_and_mig_uuid(fake: FakeNvml) -> None:
    """A GPU UUID picks that GPU; a MIG UUID picks its GPU with that instance only."""
    sampler, _ = make(fake, environ={"CUDA_VISIBLE_DEVICES": f"{UUIDS[1]},{MIG_UUIDS[0]}"})
    assert sampler is not None
    metrics = sampler.collect().metrics
    sampler.close()
    assert metrics["sys.gpu.0.used_memory"] == 6 * GiB
    assert metrics["sys.gpu.1.mig.0.used_memory"] == 10 * GiB
    assert "sys.gpu.1.mig.2.used_memory" not in metrics


def test_visible_names_nothing(fake: FakeNvml) -> None:
    """CUDA_VISIBLE_DEVICES=-1 means no GPU: no sampler, one reason, NVML shut down."""
    sampler, reasons = make(fake, environ={"CUDA_VISIBLE_DEVICES": "-1"})
    assert sampler is None
    assert reasons == ["CUDA_VISIBLE_DEVICES='-1' names no GPU; GPU sampling is off"]
    assert fake.calls[-1] == "nvmlShutdown"


# -- when there is nothing to sample --------------------------------------------------------------


def test_library_missing_turns_gpu_sampling_off() -> None:
    """No NVIDIA driver: None, and one line saying so and what to do."""
    sampler, reasons = make(library_missing())
    assert sampler is None
    assert reasons == [
        "NVML library libnvidia-ml.so.1 not found; install the NVIDIA driver to sample GPUs; "
        "GPU sampling is off"
    ]


def test_no_gpu_and_switched_off() -> None:
    """A driver with no GPU, and [sampling] gpu = false, each give their reason."""
    sampler, reasons = make(FakeNvml([]))
    assert sampler is None
    assert reasons == ["NVML sees no GPU; GPU sampling is off"]
    off: list[str] = []
    assert (
        gpu_sampler(Settings(sample_gpu=False), lib=three_gpus(), on_unavailable=off.append) is None
    )
    assert off == ["GPU sampling is off ([sampling] gpu = false)"]


def test_every_call_unknown_at_start() -> None:
    """NVML starts but cannot even count GPUs: None, naming the call."""
    fake = every_call_unknown()
    sampler, reasons = make(fake)
    assert sampler is None
    assert reasons == [
        "cannot list the GPUs: NVML nvmlDeviceGetCount failed: Unknown Error; GPU sampling is off"
    ]


def test_every_call_unknown_mid_run(sampler: GpuSampler, fake: FakeNvml) -> None:
    """Everything failing mid-run: one event per failure when it starts, then a raised error."""
    sampler.collect()
    fake.every_call = pynvml.NVMLError_Unknown()
    sample = sampler.collect()
    assert sample.metrics == {}
    assert [(e.kind, e.message) for e in sample.events] == [
        ("gpu.error", "GPU events: NVML nvmlEventSetWait failed: Unknown Error"),
        ("gpu.error", "NVML nvmlDeviceGetMemoryInfo failed on GPU 0: Unknown Error"),
        ("gpu.error", "NVML nvmlDeviceGetMemoryInfo failed on GPU 1: Unknown Error"),
        ("gpu.error", "NVML nvmlDeviceGetMemoryInfo failed on GPU 2: Unknown Error"),
    ]
    with pytest.raises(CollectorError) as caught:
        sampler.collect()
    assert str(caught.value) == "NVML nvmlDeviceGetMemoryInfo failed on GPU 0: Unknown Error"
    fake.every_call = None
    pcie = {f"sys.gpu.{i}.pcie_{d}_bps" for i in range(3) for d in ("tx", "rx")}
    assert (
        dict(sampler.collect().metrics).keys()
        == {k for k in FIRST_METRICS if not k.endswith(".total_memory")} | pcie
    )


def test_one_field_failing_is_reported_once(sampler: GpuSampler, fake: FakeNvml) -> None:
    """A field failing with Unknown is left out; its event comes when it starts, not per sample."""
    fake.gpus[1].temperature_c = pynvml.NVMLError_Unknown()
    first = sampler.collect()
    assert "sys.gpu.1.temperature" not in first.metrics
    assert "gpu.1.temperature" not in first.unsupported
    assert first.events == [
        HealthEvent(
            "gpu.error",
            "NVML nvmlDeviceGetTemperatureV failed on GPU 1: Unknown Error",
            TS,
            {"device": "gpu.1", "field": "gpu.1.temperature"},
        )
    ]
    assert sampler.collect().events == []
    fake.gpus[1].temperature_c = 60
    assert sampler.collect().metrics["sys.gpu.1.temperature"] == 60
    fake.gpus[1].temperature_c = pynvml.NVMLError_Unknown()
    assert len(sampler.collect().events) == 1  # failing again after a recovery is news


# -- a GPU lost, a wedged driver ------------------------------------------------------------------


def test_a_gpu_lost_mid_run(sampler: GpuSampler, fake: FakeNvml) -> None:
    """The lost GPU gets one gpu.lost event and is dropped; the others are still sampled."""
    sampler.collect()
    fake.gpus[1].lost = True
    sample = sampler.collect()
    assert sample.events == [
        HealthEvent(
            "gpu.lost",
            f"GPU 1: lost ({UUIDS[1]}); no longer sampled; check nvidia-smi and the kernel log",
            TS,
            {"device": "gpu.1", "uuid": UUIDS[1]},
        )
    ]
    assert not any(name.startswith("sys.gpu.1.") for name in sample.metrics)
    assert sample.metrics["sys.gpu.0.used_memory"] == 20 * GiB
    assert sample.metrics["sys.gpu.2.mig.0.used_memory"] == 10 * GiB
    assert [g["gpuId"] for g in typed_bodies(sample)["add-gpu-metrics"]["gpus"]] == [0]  # type: ignore[index]
    later = sampler.collect()
    assert later.events == []
    assert later.metrics["sys.gpu.0.used_memory"] == 20 * GiB
    assert [d.device.key for d in sampler.devices] == ["gpu.0", "gpu.2"]


def test_every_gpu_lost(sampler: GpuSampler, fake: FakeNvml) -> None:
    """When all are lost the sample carries the events; later samples raise GpuLost."""
    for gpu in fake.gpus:
        gpu.lost = True
    fake.xid_queue.append((0, 79))
    sample = sampler.collect()
    assert [e.kind for e in sample.events] == ["gpu.xid", "gpu.lost", "gpu.lost", "gpu.lost"]
    assert sample.metrics == {}
    with pytest.raises(GpuLost, match="every reported GPU is lost"):
        sampler.collect()


def test_a_hung_call_costs_one_budget() -> None:
    """A wedged call: the sample returns within about the budget, says so, and recovers."""
    fake, hang = hanging("temperature_c", gpu=1)
    nvml = Nvml(fake, timeout_s=1.0)
    gpus, notes = discover(nvml, None)
    sampler = GpuSampler(nvml, gpus, clock=lambda: TS)
    assert notes == []
    started = time.monotonic()
    sample = sampler.collect()
    assert time.monotonic() - started < 3
    stuck = (
        "NVML call nvmlDeviceGetTemperatureV on GPU 1 took longer than 1 s; "
        "the driver may be wedged"
    )
    assert [(e.kind, e.message) for e in sample.events] == [("gpu.error", stuck)]
    assert sample.metrics["sys.gpu.0.used_memory"] == 20 * GiB  # read before the hang
    assert not any(name.startswith(("sys.gpu.1.", "sys.gpu.2.")) for name in sample.metrics)

    started = time.monotonic()
    still = sampler.collect()  # fails fast while the call is stuck
    assert time.monotonic() - started < 0.5
    waiting = (
        "NVML call nvmlDeviceGetTemperatureV on GPU 1 has not returned after 1 s; the driver "
        "may be wedged; GPU sampling resumes when it returns"
    )
    assert [e.message for e in still.events] == [f"GPU events: {waiting}", waiting]
    with pytest.raises(CollectorError, match=r"has not returned after 1 s"):
        sampler.collect()

    hang.release.set()
    wait_until(lambda: not nvml.stuck, timeout_s=5)
    recovered = sampler.collect()
    assert recovered.metrics["sys.gpu.1.temperature"] == 55
    assert recovered.metrics["sys.gpu.2.used_memory"] == 2 * GiB
    sampler.close()


# -- health events --------------------------------------------------------------------------------


def test_xid_events(sampler: GpuSampler, fake: FakeNvml) -> None:
    """XIDs are polled at each sample, named with a meaning from the table."""
    assert sampler.collect().events == []
    fake.xid_queue += [(0, 79), (2, 150), (1, 13)]  # GPU 1 has no event support
    events = sampler.collect().events
    assert events == [
        HealthEvent(
            "gpu.xid",
            "GPU 0: XID 79 (GPU has fallen off the bus)",
            TS,
            {"device": "gpu.0", "xid": 79},
        ),
        HealthEvent(
            "gpu.xid",
            "GPU 2: XID 150 (see NVIDIA's XID catalogue)",
            TS,
            {"device": "gpu.2", "xid": 150},
        ),
    ]
    assert sampler.collect().events == []


def test_ecc_increment_is_an_event(sampler: GpuSampler, fake: FakeNvml) -> None:
    """Counts at the first sample are the baseline; an increase later is an event."""
    fake.gpus[0].ecc_uncorrected = 3
    assert sampler.collect().events == []
    fake.gpus[0].ecc_uncorrected = 5
    fake.gpus[0].ecc_corrected = 1
    sample = sampler.collect()
    assert [e.message for e in sample.events] == [
        "GPU 0: 1 new corrected ECC error (volatile count 1)",
        "GPU 0: 2 new uncorrected ECC errors (volatile count 5)",
    ]
    assert sample.events[1].data == {"device": "gpu.0", "type": "uncorrected", "new": 2, "total": 5}
    assert sample.metrics["sys.gpu.0.ecc_uncorrected"] == 5
    assert sampler.collect().events == []


def test_throttle_unsupported(fake: FakeNvml) -> None:
    """Without throttle reasons, both the bitmask and the 0/1 flag are unsupported, not 0."""
    fake.gpus[0].throttle_reasons = pynvml.NVMLError_NotSupported()
    sampler, _ = make(fake)
    assert sampler is not None
    sample = sampler.collect()
    sampler.close()
    assert {"gpu.0.throttle_reasons", "gpu.0.throttled"} <= sample.unsupported
    assert "sys.gpu.0.throttled" not in sample.metrics


def test_throttle_start_and_end(sampler: GpuSampler, fake: FakeNvml) -> None:
    """Clocks held back (not idle, not app clocks) start an event; release ends it."""
    fake.gpus[0].throttle_reasons = 0x2  # application clocks: an admin's choice, not throttling
    assert sampler.collect().events == []
    fake.gpus[0].throttle_reasons = 0x4 | 0x40
    sample = sampler.collect()
    assert sample.events == [
        HealthEvent(
            "gpu.throttle_start",
            "GPU 0: clocks throttled (sw_power_cap, hw_thermal_slowdown)",
            TS,
            {"device": "gpu.0", "reasons": 0x44},
        )
    ]
    assert sample.metrics["sys.gpu.0.throttled"] == 1
    assert sample.metrics["sys.gpu.0.throttle_reasons"] == 0x44
    fake.gpus[0].throttle_reasons = 0x4
    assert sampler.collect().events == []  # still throttled
    fake.gpus[0].throttle_reasons = 0x1
    sample = sampler.collect()
    assert [(e.kind, e.message) for e in sample.events] == [
        ("gpu.throttle_end", "GPU 0: clocks no longer throttled")
    ]
    assert sample.metrics["sys.gpu.0.throttled"] == 0


# -- static facts ---------------------------------------------------------------------------------

STATIC_INFO = [
    {
        "name": "NVIDIA A100-SXM4-80GB",
        "uuid": UUIDS[0],
        "power_limit": 400_000,
        "gpu_index": 0,
        "total_memory": 80 * GiB,
    },
    {
        "name": "NVIDIA GeForce RTX 4090",
        "uuid": UUIDS[1],
        "power_limit": None,
        "gpu_index": 1,
        "total_memory": 24 * GiB,
    },
    {
        "name": "NVIDIA A100-SXM4-80GB",
        "uuid": UUIDS[2],
        "power_limit": 400_000,
        "gpu_index": 2,
        "total_memory": 80 * GiB,
    },
]


def test_static_facts(sampler: GpuSampler) -> None:
    """gpuStaticInfoList in the live SDK's snake_case shape, and the additional facts."""
    facts = sampler.facts()
    assert facts.static_info == STATIC_INFO
    assert facts.additional == [
        {"key": "nvidia_driver_version", "value": "550.54.15"},
        {"key": "cuda_driver_version", "value": "12.4"},
        {"key": "nvml_version", "value": "12.550.54.15"},
        {"key": "gpu_count", "value": 3},
        {"key": "gpu_0_mig_mode", "value": "disabled"},
        {"key": "gpu_2_mig_mode", "value": "enabled"},
        {"key": "sys.gpu.0", "value": UUIDS[0]},
        {"key": "sys.gpu.1", "value": UUIDS[1]},
        {"key": "sys.gpu.2", "value": UUIDS[2]},
        {"key": "sys.gpu.2.mig.0", "value": MIG_UUIDS[0]},
        {"key": "sys.gpu.2.mig.2", "value": MIG_UUIDS[1]},
    ]


def test_static_facts_best_effort(fake: FakeNvml) -> None:
    """Facts NVML cannot give are left out; without NVML there are none, and a reason."""
    fake.driver = pynvml.NVMLError_NotSupported()
    facts = read_gpu_facts(Settings(), lib=fake, environ={"CUDA_VISIBLE_DEVICES": "1"})
    assert facts is not None
    assert facts.static_info == STATIC_INFO
    assert [item["key"] for item in facts.additional] == [
        "cuda_driver_version",
        "nvml_version",
        "gpu_count",
        "gpu_0_mig_mode",
        "gpu_2_mig_mode",
        "cuda_visible_devices",
        "sys.gpu.0",
    ]
    assert facts.additional[-1] == {"key": "sys.gpu.0", "value": UUIDS[1]}
    assert fake.calls[-1] == "nvmlShutdown"
    reasons: list[str] = []
    assert read_gpu_facts(Settings(), lib=library_missing(), on_unavailable=reasons.append) is None
    assert reasons == [
        "NVML library libnvidia-ml.so.1 not found; install the NVIDIA driver to sample GPUs; "
        "GPU sampling is off"
    ]


# -- on the wire ----------------------------------------------------------------------------------


def test_bodies_pass_the_stand_in(sampler: GpuSampler, server: CometStandIn) -> None:
    """The typed body, a metric batch and the static facts are what docs/comet-wire.md accepts."""
    sample: Sample = sampler.collect()
    facts = sampler.facts()
    items = [
        bodies.metric_item(name, value, sample.timestamp_ms)
        for name, value in sample.metrics.items()
    ]
    with CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=5) as client:
        client.call("add-gpu-metrics", typed_bodies(sample)["add-gpu-metrics"], experiment_key=KEY)
        client.call("log-metric-batch", bodies.metric_batch(items), experiment_key=KEY)
        details = bodies.system_details(
            gpu_static_info=facts.static_info, additional=facts.additional
        )
        client.call("set-system-details", details, experiment_key=KEY)
    assert server.received("add-gpu-metrics")[0].body["gpus"][1]["gpuUtilization"] == 90  # type: ignore[index]
    sent = server.received("set-system-details")[0].body
    assert sent["gpuStaticInfoList"] == STATIC_INFO  # type: ignore[index]
    assert len(server.metric_items()) == len(FIRST_METRICS)


# -- a real GPU, when there is one ----------------------------------------------------------------


@pytest.fixture(name="real_nvml")
def _real_nvml() -> Iterator[Nvml]:
    try:
        nvml = Nvml(pynvml, timeout_s=5.0)
    except NvmlUnavailable as exc:
        pytest.skip(f"no usable NVIDIA GPU: {exc}")
    yield nvml
    nvml.close()


@pytest.mark.gpu
def test_real_static_facts(real_nvml: Nvml) -> None:
    """On a real GPU: one static entry per device, UUIDs and bytes as wire §3.3 says."""
    count = real_nvml.count()
    assert count >= 1
    static = [real_nvml.static(n) for n in range(count)]
    assert all(s.uuid and s.uuid.startswith("GPU-") for s in static)
    assert all(s.total_bytes and s.total_bytes > 2**30 for s in static)
    assert real_nvml.cuda_driver_version().count(".") == 1


@pytest.mark.gpu
def test_real_sample() -> None:
    """On a real GPU: a sample has the SDK's names, in bytes and percent."""
    reasons: list[str] = []
    sampler = gpu_sampler(Settings(), environ={}, on_unavailable=reasons.append)
    if sampler is None:
        pytest.skip(f"no usable NVIDIA GPU: {reasons}")
    try:
        sample = sampler.collect()
    finally:
        sampler.close()
    m = sample.metrics
    assert m["sys.gpu.0.used_memory"] + m["sys.gpu.0.free_memory"] <= m["sys.gpu.0.total_memory"]
    assert 0 <= m.get("sys.gpu.0.percent.used_memory", 0) <= 100
    if "sys.gpu.0.gpu_utilization" in m:
        assert 0 <= m["sys.gpu.0.gpu_utilization"] <= 100
