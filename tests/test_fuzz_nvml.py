"""Fuzzing NVML's values: whatever the driver returns, a GPU sample stays sane or fails clearly.

The fake NVML (tests/fakes/nvml.py) is given random field values: negative,
huge, None, strings and floats where the binding could hand them over, and
instances of pynvml's own NVMLError classes. The property: ``collect()``
returns a Sample or raises a CollectorError (never another exception), and
in the Sample

- memory figures are whole numbers >= 0, used <= total, percent.used_memory in 0-100;
- utilisation is a whole number in 0-100 or left out; every other figure is
  a whole number >= 0 or left out (a fan may run past 100 %, NVML says so);
- nothing is dropped silently: each field of a GPU that gave a reading is
  sent, or named in ``unsupported``, or named by a ``gpu.error`` event, and a
  GPU that gave no reading has a ``gpu.error`` or ``gpu.lost`` event;
- every event message and every error message is one line.
"""

from __future__ import annotations

import math

import pynvml
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.collect.base import Sample
from agent.collect.gpu import GpuSampler, gpu_sampler
from agent.collect.nvml import Nvml
from agent.config import Settings
from agent.errors import CollectorError
from agent.lifecycle.samples import typed_bodies
from tests.fakes.nvml import UUIDS, FakeGpu, FakeMig, FakeNvml, FakeProcess, GiB
from tests.fuzzing import fuzz

TS = 1_700_000_000_000
NVML_ERRORS = st.sampled_from(
    [
        pynvml.NVMLError_NotSupported,
        pynvml.NVMLError_GpuIsLost,
        pynvml.NVMLError_Unknown,
        pynvml.NVMLError_NoPermission,
        pynvml.NVMLError_NotFound,
        pynvml.NVMLError_FunctionNotFound,
        pynvml.NVMLError_InvalidArgument,
        pynvml.NVMLError_Timeout,
        pynvml.NVMLError_Uninitialized,
        pynvml.NVMLError_InsufficientPower,
    ]
).map(lambda cls: cls())
ODD = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**65),
    st.sampled_from([-1, 0, 101, 2**32 - 1, 2**64 - 1, 10**30]),
    st.none(),
    st.floats(),
    st.text(max_size=4),
    st.binary(max_size=4),
)
MEMORY_ODD = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**65), st.sampled_from([-1, 0, 2**64 - 1])
)
COUNTER = st.one_of(st.integers(0, 2**40), ODD, NVML_ERRORS)
PERCENT = st.one_of(st.integers(0, 100), ODD)
# Fields whose error (if any) the sampler reports per field; memory has no such fallback.
FIELDS = (
    "power_mw",
    "power_limit_mw",
    "temperature_c",
    "sm_clock_mhz",
    "memory_clock_mhz",
    "fan_percent",
    "pcie_tx_kbs",
    "pcie_rx_kbs",
    "throttle_reasons",
    "ecc_corrected",
    "ecc_uncorrected",
)
METRIC_OF = {  # FakeGpu field (or pair) → metric name after "sys.gpu.<i>."
    "power_mw": "power_usage",
    "power_limit_mw": "power_limit",
    "temperature_c": "temperature",
    "sm_clock_mhz": "clock_sm",
    "memory_clock_mhz": "clock_memory",
    "fan_percent": "fan_speed",
    "pcie_tx_kbs": "pcie_tx_bps",
    "pcie_rx_kbs": "pcie_rx_bps",
    "throttle_reasons": "throttle_reasons",
    "ecc_corrected": "ecc_corrected",
    "ecc_uncorrected": "ecc_uncorrected",
}
PERCENT_METRICS = {"gpu_utilization", "memory_utilization"}


@st.composite
def fake_gpus(draw: st.DrawFn, uuid: str) -> FakeGpu:
    """One GPU with random readings; sometimes in MIG mode with one random instance."""
    # pynvml's memory struct holds integers only (the fake computes free = total - used).
    total = draw(st.one_of(st.integers(0, 2**40), MEMORY_ODD, st.just(80 * GiB)))
    used = draw(st.one_of(st.integers(0, 2**40), MEMORY_ODD, NVML_ERRORS, st.just(20 * GiB)))
    utilization = draw(st.one_of(st.tuples(PERCENT, PERCENT), NVML_ERRORS))
    processes = draw(
        st.one_of(
            st.lists(
                st.builds(FakeProcess, st.one_of(st.integers(0, 10), ODD), COUNTER | st.none()),
                max_size=3,
            ),
            NVML_ERRORS,
        )
    )
    values = {name: draw(COUNTER) for name in FIELDS}
    mig = draw(st.booleans())
    migs = []
    if mig:
        migs = [
            FakeMig(
                "MIG-" + uuid[4:],
                total_bytes=draw(st.one_of(st.integers(0, 2**40), MEMORY_ODD)),
                used_bytes=draw(st.one_of(st.integers(0, 2**40), MEMORY_ODD)),
                utilization=draw(st.one_of(st.tuples(PERCENT, PERCENT), NVML_ERRORS)),
            )
        ]
    return FakeGpu(
        uuid,
        total_bytes=total,
        used_bytes=used,
        utilization=utilization,
        processes=processes,
        mig_mode=(1, 1) if mig else (0, 0),
        migs=migs,  # type: ignore[arg-type]
        **values,
    )


def build(fake: FakeNvml, watched: set[int] | None) -> GpuSampler:
    """The sampler as the daemon builds it, on the fake."""
    reasons: list[str] = []
    sampler = gpu_sampler(
        Settings(nvml_timeout_s=5.0),
        lib=fake,
        watched_pids=None if watched is None else (lambda: watched),
        environ={},
        clock=lambda: TS,
        on_unavailable=reasons.append,
    )
    assert sampler is not None, reasons
    return sampler


def one_line(text: str) -> bool:
    """Whether `text` is a single line (no line break of any kind)."""
    return bool(text) and len(text.splitlines()) == 1


def check_sane(sample: Sample, sampler: GpuSampler, told: set[str], *, first: bool = False) -> None:
    """The figures of a sample: whole, in range, or left out and accounted for.

    `told` gathers what gpu.error and gpu.lost events named, this sample and earlier
    ones: a failure that goes on unchanged is not reported again.
    """
    for name, value in sample.metrics.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), name
        assert math.isfinite(value) and value >= 0, (name, value)
        last = name.rsplit(".", 1)[-1]
        if last in PERCENT_METRICS or name.endswith("percent.used_memory"):
            assert value <= 100, (name, value)
        if name.endswith(".used_memory") and not name.endswith("percent.used_memory"):
            total = sample.metrics.get(name.removesuffix("used_memory") + "total_memory")
            assert total is None or value <= total, (name, value, total)
    for body in typed_bodies(sample).get("add-gpu-metrics", {}).get("gpus", []):  # type: ignore[attr-defined]
        for key in ("freeMemory", "usedMemory", "totalMemory"):
            assert isinstance(body[key], int) and body[key] >= 0, body
        assert 0 <= body["gpuUtilization"] <= 100, body
    for event in sample.events:
        assert one_line(event.message), event
    told.update(str(e.data.get("field")) for e in sample.events if e.kind == "gpu.error")
    told.update(str(e.data.get("device")) for e in sample.events if e.kind == "gpu.lost")
    for gpu in sampler.devices:
        for dev in (gpu.device, *gpu.migs):
            key = dev.key
            if f"sys.{key}.used_memory" not in sample.metrics:
                # A MIG instance is not read when its GPU failed: the GPU's event covers it.
                memory = f"{key}.used_memory"
                assert {key, gpu.device.key, memory} & (told | sample.unsupported), (
                    key,
                    sample.events,
                )
                continue
            names = ["gpu_utilization", "memory_utilization"]
            if dev is gpu.device:
                names += list(METRIC_OF.values())
            for metric in names:
                if metric.startswith("pcie_") and first:
                    continue  # a rate from NVML's byte counters needs a second reading
                sent = f"sys.{key}.{metric}" in sample.metrics
                named = f"{key}.{metric}" in sample.unsupported or f"{key}.{metric}" in told
                assert sent or named, (key, metric, sample.unsupported, told)


@fuzz(200)
@given(
    gpus=st.tuples(fake_gpus(UUIDS[0]), fake_gpus(UUIDS[1])),
    watched=st.none() | st.sets(st.integers(0, 10), max_size=3),
)
def test_any_nvml_values_give_a_sane_sample_or_a_collector_error(
    gpus: tuple[FakeGpu, FakeGpu], watched: set[int] | None
) -> None:
    """Random NVML values and errors: a sane Sample, or CollectorError with one line."""
    sampler = build(FakeNvml(list(gpus)), watched)
    told: set[str] = set()
    try:
        for n in range(2):  # the second sample sees the failures already reported
            error: CollectorError | None = None
            try:
                sample = sampler.collect()
            except CollectorError as exc:
                error = exc
            if error is not None:
                assert one_line(str(error)), str(error)
            else:
                check_sane(sample, sampler, told, first=n == 0)
    finally:
        sampler.close()


# -- regressions found by the property above ---------------------------------------------------


def test_out_of_range_utilisation_is_left_out_and_reported() -> None:
    """200 % utilisation is not sent: the field is left out with a gpu.error event naming it."""
    fake = FakeNvml([FakeGpu(UUIDS[0], utilization=(200, 12))])
    sampler = build(fake, None)
    sample = sampler.collect()
    sampler.close()
    assert "sys.gpu.0.gpu_utilization" not in sample.metrics
    assert sample.metrics["sys.gpu.0.memory_utilization"] == 12
    assert "add-gpu-metrics" not in typed_bodies(sample)  # its utilisation is required
    [event] = sample.events
    assert (event.kind, event.data) == (
        "gpu.error",
        {"device": "gpu.0", "field": "gpu.0.gpu_utilization"},
    )
    assert event.message == (
        "NVML nvmlDeviceGetUtilizationRates on GPU 0 gave 200 for gpu_utilization_percent; left out"
    )


def test_negative_free_memory_fails_that_gpu_only() -> None:
    """used > total (free < 0) is not a reading: that GPU's memory gets a gpu.error event."""
    fake = FakeNvml([FakeGpu(UUIDS[0], used_bytes=90 * GiB), FakeGpu(UUIDS[1])])
    sampler = build(fake, None)
    sample = sampler.collect()
    sampler.close()
    assert "sys.gpu.0.used_memory" not in sample.metrics
    assert sample.metrics["sys.gpu.1.used_memory"] == 20 * GiB
    [event] = sample.events
    assert event.data == {"device": "gpu.0", "field": "gpu.0.used_memory"}
    assert sample.metrics["sys.gpu.0.temperature"] == 55  # the rest of GPU 0 still reads
    assert event.message == (
        "NVML nvmlDeviceGetMemoryInfo on GPU 0 gave impossible figures (total 85899345920, "
        "used 96636764160, free -10737418240); skipped this time"
    )


@pytest.mark.parametrize("value", [None, "12", 1.5, -3])
def test_a_counter_of_the_wrong_kind_is_left_out(value: object) -> None:
    """A temperature that is not a whole number >= 0 is left out and reported, not a crash."""
    fake = FakeNvml([FakeGpu(UUIDS[0], temperature_c=value)])  # type: ignore[arg-type]
    sampler = build(fake, None)
    sample = sampler.collect()
    sampler.close()
    assert "sys.gpu.0.temperature" not in sample.metrics
    assert [e.data["field"] for e in sample.events] == ["gpu.0.temperature"]


def test_static_facts_skip_values_of_the_wrong_kind() -> None:
    """Static facts with a memory total or power limit that is not a number give None."""
    fake = FakeNvml([FakeGpu(UUIDS[0], total_bytes=-1, power_limit_mw="n/a")])  # type: ignore[arg-type]
    nvml = Nvml(fake)
    static = nvml.static(0)
    nvml.close()
    assert (static.total_bytes, static.power_limit_mw) == (None, None)
