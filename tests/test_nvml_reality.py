"""What real NVML does that a kind fake would not: one test per behaviour of issue 13.

Each scenario is a mode of ``tests/fakes/nvml.py`` written from nvidia-ml-py's
own ``pynvml.py`` (13.x) and ``nvml.h``: the real exception classes (with
``NVMLLibraryMismatchError``, which is no ``NVMLError``), the real return
shapes, and the per-driver-generation gaps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pynvml

from agent.collect.gpu import GpuSampler, gpu_sampler
from agent.config import Settings
from tests.fakes.nvml import (
    FakeMig,
    FakeNvml,
    FakeProcess,
    GiB,
    eight_gpus,
    host_pids,
    mig_non_root,
    r470,
    three_gpus,
)

TS = 1_700_000_000_000


def build(fake: FakeNvml, *, watched: set[int] | None = None, timeout_s: float = 2.0) -> GpuSampler:
    reasons: list[str] = []
    sampler = gpu_sampler(
        Settings(nvml_timeout_s=timeout_s),
        lib=fake,
        watched_pids=None if watched is None else (lambda: watched),
        environ={},
        clock=lambda: TS,
        on_unavailable=reasons.append,
    )
    assert sampler is not None, reasons
    return sampler


def test_mig_as_non_root_still_reads_the_instances_and_the_rest_of_the_gpu() -> None:
    """The parent's memory answers NO_PERMISSION: power, temperature and every MIG instance
    are still sent, the parent's memory is left out with one event, nothing is sent as 0."""
    sampler = build(mig_non_root())
    first = sampler.collect()
    second = sampler.collect()
    sampler.close()
    m = first.metrics
    assert m["sys.gpu.0.power_usage"] == 250_000
    assert m["sys.gpu.0.temperature"] == 55
    assert m["sys.gpu.0.mig.0.used_memory"] == 10 * GiB
    assert m["sys.gpu.0.mig.1.total_memory"] == 20 * GiB
    assert "sys.gpu.0.used_memory" not in m
    assert not any(k.endswith("utilization") for k in m)  # NOT_SUPPORTED on MIG: left out
    assert {"gpu.0.mig.0.gpu_utilization", "gpu.0.gpu_utilization"} <= first.unsupported
    [event] = first.events
    assert event.data == {"device": "gpu.0", "field": "gpu.0.used_memory"}
    assert "permission denied" in event.message
    assert second.events == []  # told once


def test_an_r470_driver_falls_back_instead_of_crashing_every_sample() -> None:
    """pynvml binds ComputeRunningProcesses to _v3 and raises NVMLLibraryMismatchError on
    R470: per-process memory comes from _v2; temperature and throttle reasons from the older
    calls; PCIe from the slow call, since the byte counters are NOT_SUPPORTED there."""
    fake = r470()
    fake.gpus[0].processes = [FakeProcess(os.getpid(), 3 * GiB)]
    sampler = build(fake, watched={os.getpid()})
    first = sampler.collect()
    second = sampler.collect()
    sampler.close()
    assert first.metrics["sys.gpu.0.process_memory"] == 3 * GiB
    assert first.metrics["sys.gpu.0.temperature"] == 55
    assert first.metrics["sys.gpu.0.throttle_reasons"] == 1
    assert first.metrics["sys.gpu.0.pcie_tx_bps"] == 1_024_000
    assert first.events == [] and second.events == []
    # The missing symbols are asked once each, not every sample.
    assert fake.calls.count("nvmlDeviceGetComputeRunningProcesses") == 2  # once per GPU
    assert fake.calls.count("nvmlDeviceGetComputeRunningProcesses_v2") == 4
    assert fake.calls.count("nvmlDeviceGetTemperatureV") == 2
    # The 20 ms call runs at the slow cadence: the second sample does not ask it again.
    assert fake.calls.count("nvmlDeviceGetPcieThroughput") == 4  # tx and rx, two GPUs, once


def test_nvml_13_prefers_the_versioned_temperature_call() -> None:
    """nvmlDeviceGetTemperature is deprecated (removal announced for CUDA 14)."""
    fake = three_gpus()
    sampler = build(fake)
    sample = sampler.collect()
    sampler.close()
    assert sample.metrics["sys.gpu.0.temperature"] == 55
    assert "nvmlDeviceGetTemperatureV" in fake.calls
    assert "nvmlDeviceGetTemperature" not in fake.calls


def test_a_gpu_lost_while_draining_events_keeps_its_xid() -> None:
    """GPU_IS_LOST from nvmlEventSetWait after XID 79 was drained: the XID is recorded, then
    the GPU-lost event; the other GPUs go on."""
    fake = three_gpus()
    sampler = build(fake)
    sampler.collect()
    fake.xid_queue.append((0, 79))
    fake.lost_after_events = True
    fake.gpus[0].lost = True
    sample = sampler.collect()
    sampler.close()
    kinds = [(e.kind, e.data.get("device")) for e in sample.events]
    assert kinds == [("gpu.xid", "gpu.0"), ("gpu.lost", "gpu.0")]
    assert sample.events[0].message == "GPU 0: XID 79 (GPU has fallen off the bus)"
    assert sample.metrics["sys.gpu.1.used_memory"] == 6 * GiB
    assert [g.device.key for g in sampler.devices] == ["gpu.1", "gpu.2"]


def test_xid_999_and_the_mig_instance_of_an_event_are_reported_as_such() -> None:
    """XID 999 is NVML's 'unknown'; a MIG event names its GPU and compute instance."""
    fake = three_gpus()
    sampler = build(fake)
    fake.xid_queue += [(2, 999, 1, 0), (0, 13)]
    sample = sampler.collect()
    sampler.close()
    xids = [e for e in sample.events if e.kind == "gpu.xid"]
    assert [e.message for e in xids] == [
        "GPU 2: XID 999 (unknown: NVML could not tell which XID) on MIG GPU instance 1, "
        "compute instance 0",
        "GPU 0: XID 13 (graphics engine exception)",
    ]
    assert xids[0].data == {"device": "gpu.2", "xid": 999, "gpu_instance": 1, "compute_instance": 0}


def test_host_pids_in_a_container_leave_process_memory_out(tmp_path: Path) -> None:
    """NVML lists pids this /proc does not have: process_memory is unknown, not 0."""
    (tmp_path / str(os.getpid())).mkdir()
    fake = host_pids()
    reasons: list[str] = []
    sampler = gpu_sampler(
        Settings(),
        lib=fake,
        watched_pids=lambda: {os.getpid()},
        environ={},
        clock=lambda: TS,
        on_unavailable=reasons.append,
        proc=tmp_path,
    )
    assert sampler is not None
    first, second = sampler.collect(), sampler.collect()
    sampler.close()
    assert "sys.gpu.0.process_memory" not in first.metrics
    [event] = first.events
    assert "host PIDs" in event.message and event.data["field"] == "gpu.0.process_memory"
    assert second.events == []


def test_a_host_proc_maps_container_pids_through_nspid(tmp_path: Path) -> None:
    """Reading a host /proc, a watched process's NSpid line gives the pid NVML reports."""
    status = tmp_path / "4000001"
    status.mkdir()
    (status / "status").write_text("Name:\tpython\nNSpid:\t4000001\t7\n")
    fake = host_pids()
    sampler = gpu_sampler(
        Settings(),
        lib=fake,
        watched_pids=lambda: {4000001},
        environ={},
        clock=lambda: TS,
        proc=tmp_path,
    )
    assert sampler is not None
    sample = sampler.collect()
    sampler.close()
    assert sample.metrics["sys.gpu.0.process_memory"] == 3 * GiB


def test_eight_gpus_cost_no_throughput_calls_and_ask_unsupported_once() -> None:
    """PCIe comes from the byte counters (no 20 ms call per direction per GPU), and what a
    device never supports (fan on SXM boards) is asked once, not every sample."""
    fake = eight_gpus()
    for gpu in fake.gpus:
        gpu.fan_percent = pynvml.NVMLError_NotSupported()
    sampler = build(fake)
    for _ in range(3):
        sampler.collect()
    sampler.close()
    assert fake.calls.count("nvmlDeviceGetPcieThroughput") == 0
    assert fake.calls.count("nvmlDeviceGetFanSpeed") == 8
    assert fake.calls.count("nvmlDeviceGetFieldValues") == 24


def test_a_slow_driver_hits_the_sample_deadline_and_the_rest_go_first_next_time() -> None:
    """Each call just under its budget: the sample stops at its deadline, names the GPUs not
    read, and reads those first next time, so none is starved."""
    fake = eight_gpus(latency_s=0.02)  # ~0.3 s a GPU; the deadline is 1 s
    sampler = build(fake, timeout_s=0.5)
    first = sampler.collect()
    read_first = {k.split(".")[2] for k in first.metrics if k.endswith(".used_memory")}
    second = sampler.collect()
    sampler.close()
    assert 0 < len(read_first) < 8
    [late] = [e for e in first.events if e.data.get("device") == "deadline"]
    assert "not read this time (read first next time)" in late.message
    read_second = {k.split(".")[2] for k in second.metrics if k.endswith(".used_memory")}
    assert read_second - read_first  # the ones skipped came first


def test_a_failed_event_registration_frees_the_set_and_goes_on() -> None:
    """nvmlDeviceRegisterEvents returning UNKNOWN leaves the set undefined: it is freed, a new
    one made with the GPUs already in, and the next GPUs still registered."""
    fake = three_gpus()
    fake.gpus[1].events = pynvml.NVMLError_Unknown()
    sampler = build(fake)
    assert fake.event_sets_freed == 1
    assert fake.registered == {0, 2}
    fake.xid_queue.append((2, 48))
    sample = sampler.collect()
    sampler.close()
    assert [e.message for e in sample.events if e.kind == "gpu.xid"] == [
        "GPU 2: XID 48 (double-bit ECC error)"
    ]


def test_mig_instances_re_created_are_found_again() -> None:
    """Old MIG handles answer INVALID_ARGUMENT once the instances are re-created: the GPU's
    instances are looked up again and read from the next sample on."""
    fake = three_gpus()
    sampler = build(fake)
    sampler.collect()
    fake.reconfigure_mig(
        2, [FakeMig("MIG-55555555-ffff-5555-5555-555555555555", used_bytes=3 * GiB)]
    )
    during = sampler.collect()
    after = sampler.collect()
    sampler.close()
    assert any("looked up again" in e.message for e in during.events)
    assert after.metrics["sys.gpu.2.mig.0.used_memory"] == 3 * GiB
    assert "sys.gpu.2.mig.2.used_memory" not in after.metrics
