"""NVML cost of one GPU sample: calls and wall time for 1 and 8 GPUs (not a test).

Run: ``python -m bench.nvml_cost [--samples 20] [--latency-ms 0.5]``

Both sides run on the fake NVML of ``tests/fakes/nvml.py`` with every call
taking ``--latency-ms`` (a healthy driver answers in tenths of a millisecond
to a millisecond; ``nvmlDeviceGetPcieThroughput`` samples its counter for
~20 ms more, which the fake models). "Ours" is the GPU sampler as the agent
runs it (every field, PCIe from the byte counters, unsupported fields asked
once); "bare" is a loop making just the calls behind nvidia-smi's default
view (memory, utilisation, power, temperature) on the same fake. The
previous design called the 20 ms throughput call twice per GPU per sample:
its cost is printed beside as "old PCIe".
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import pynvml

from agent.collect.gpu import gpu_sampler
from agent.config import Settings
from tests.fakes.nvml import FakeNvml, eight_gpus


@dataclass(frozen=True)
class Result:
    """Per sample: our calls and milliseconds, the bare loop's, and the old PCIe cost."""

    gpus: int
    ours_calls: float
    ours_ms: float
    bare_calls: float
    bare_ms: float
    old_pcie_ms: float

    @property
    def ratio(self) -> float:
        """Our time per NVML call over the bare loop's: what the budgeted worker adds."""
        if not (self.bare_ms and self.ours_calls and self.bare_calls):
            return 0.0
        return (self.ours_ms / self.ours_calls) / (self.bare_ms / self.bare_calls)


def _fake(gpus: int, latency_s: float) -> FakeNvml:
    fake = eight_gpus(latency_s)
    fake.gpus = fake.gpus[:gpus]
    for gpu in fake.gpus:  # SXM boards have no fan: NOT_SUPPORTED, as on an H200
        gpu.fan_percent = pynvml.NVMLError_NotSupported()
    return fake


def measure(gpus: int, samples: int, latency_s: float) -> Result:
    """Time `samples` GPU samples of `gpus` GPUs, ours then bare, after one warm-up sample each."""
    fake = _fake(gpus, latency_s)
    sampler = gpu_sampler(Settings(), lib=fake, environ={})
    if sampler is None:
        raise SystemExit("the fake NVML gave no GPU sampler")
    sampler.collect()
    before = len(fake.calls)
    started = time.perf_counter()
    for _ in range(samples):
        sampler.collect()
    ours_ms = (time.perf_counter() - started) * 1e3 / samples
    ours_calls = (len(fake.calls) - before) / samples
    sampler.close()

    bare = _fake(gpus, latency_s)
    handles = [bare.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]
    before = len(bare.calls)
    started = time.perf_counter()
    for _ in range(samples):
        for h in handles:
            bare.nvmlDeviceGetMemoryInfo(h)
            bare.nvmlDeviceGetUtilizationRates(h)
            bare.nvmlDeviceGetPowerUsage(h)
            bare.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU)
    bare_ms = (time.perf_counter() - started) * 1e3 / samples
    bare_calls = (len(bare.calls) - before) / samples
    old_pcie_ms = gpus * 2 * (20 + latency_s * 1e3)
    return Result(gpus, ours_calls, ours_ms, bare_calls, bare_ms, old_pcie_ms)


def main() -> None:
    """Print one line per GPU count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=0.5)
    args = parser.parse_args()
    for gpus in (1, 8):
        r = measure(gpus, args.samples, args.latency_ms / 1e3)
        print(
            f"{gpus} GPU(s): ours {r.ours_ms:.1f} ms, {r.ours_calls:.0f} calls; bare "
            f"{r.bare_ms:.1f} ms, {r.bare_calls:.0f} calls; per call {r.ratio:.2f}x; "
            f"old PCIe calls alone {r.old_pcie_ms:.0f} ms"
        )


if __name__ == "__main__":
    main()
