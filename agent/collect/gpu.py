"""NVIDIA GPUs: the static facts for Set System Details, and the sampler behind ``sys.gpu.*``.

Which devices, and how ``<i>`` and ``<j>`` are numbered: see
``agent.collect.gpu_devices``. ``<i>`` is the position among the reported
GPUs, as the SDK does (wire §3.7); a MIG-enabled GPU also reports each
MIG instance under ``sys.gpu.<i>.mig.<j>.*`` (memory, utilisation where
supported, process_memory).

Metric names beyond the SDK's (all per ``sys.gpu.<i>``): ``power_limit``
(mW), ``clock_sm`` and ``clock_memory`` (MHz), ``fan_speed`` (%),
``pcie_tx_bps`` and ``pcie_rx_bps`` (bytes/s), ``throttle_reasons`` (NVML's
bitmask) and ``throttled`` (0/1: a reason other than idle or application
clocks), ``ecc_corrected`` and ``ecc_uncorrected`` (volatile counts), and
``process_memory`` (bytes of GPU memory held by the watched process tree).
``total_memory`` is sent with the first sample only, as the SDK does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent.collect.base import Clock, HealthEvent, Number, Sample, read_small
from agent.collect.gpu_devices import Device, ReportedGpu, discover
from agent.collect.gpu_health import GpuHealth, throttling
from agent.collect.gpu_types import GpuReading, GpuStatic
from agent.collect.nvml import Nvml, NvmlStuck, NvmlUnavailable, SampleDeadline, StaleHandle
from agent.collect.process import parse_nspid
from agent.collect.readings import GpuUsage, GpuUsages
from agent.config import Settings
from agent.errors import CollectorError, GpuLost, NoData
from agent.message import now_ms

PidSource = Callable[[], set[int]]
# GpuReading field → metric name after "sys.gpu.<i>.", in the order they are sent.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("gpu_utilization_percent", "gpu_utilization"),
    ("memory_utilization_percent", "memory_utilization"),
    ("power_mw", "power_usage"),
    ("temperature_c", "temperature"),
    ("power_limit_mw", "power_limit"),
    ("sm_clock_mhz", "clock_sm"),
    ("memory_clock_mhz", "clock_memory"),
    ("fan_percent", "fan_speed"),
    ("pcie_tx_bps", "pcie_tx_bps"),
    ("pcie_rx_bps", "pcie_rx_bps"),
    ("throttle_reasons", "throttle_reasons"),
    ("ecc_corrected", "ecc_corrected"),
    ("ecc_uncorrected", "ecc_uncorrected"),
)
_NAMES = {**dict(_FIELDS), "processes": "process_memory", "memory": "used_memory"}


@dataclass(frozen=True)
class GpuFacts:
    """The static GPU facts: Set System Details' gpuStaticInfoList and additional items."""

    static_info: list[dict[str, object]]
    additional: list[dict[str, object]]


def gpu_static_info(statics: Sequence[GpuStatic]) -> list[dict[str, object]]:
    """Return gpuStaticInfoList: one snake_case dict per NVML device, as the live SDK sends it.

    Keys in the SDK's order; ``gpu_index`` is the NVML index (wire §3.3);
    a value NVML could not read is None.
    """
    return [
        {
            "name": s.name,
            "uuid": s.uuid,
            "power_limit": s.power_limit_mw,
            "gpu_index": s.nvml_index,
            "total_memory": s.total_bytes,
        }
        for s in statics
    ]


def gpu_facts(nvml: Nvml, gpus: Sequence[ReportedGpu], visible: str | None) -> GpuFacts:
    """Return the static GPU facts, and which device each reported ``sys.gpu.<i>`` is.

    Additional items: nvidia_driver_version, cuda_driver_version ("12.4"),
    nvml_version, gpu_count, ``gpu_<n>_mig_mode`` per NVML index where the
    GPU has a MIG mode, cuda_visible_devices when set, and ``sys.gpu.<i>``
    (and ``sys.gpu.<i>.mig.<j>``) → the device's UUID.
    """
    items: list[tuple[str, object]] = []
    for key, read in (
        ("nvidia_driver_version", nvml.driver_version),
        ("cuda_driver_version", nvml.cuda_driver_version),
        ("nvml_version", nvml.nvml_version),
    ):
        try:
            items.append((key, read()))
        except NvmlStuck:
            raise
        except CollectorError:
            continue  # best effort: a fact NVML cannot give is left out
    statics = [nvml.static(n) for n in range(nvml.count())]
    items.append(("gpu_count", len(statics)))
    for s in statics:
        if s.mig_enabled is not None:
            mode = "enabled" if s.mig_enabled else "disabled"
            items.append((f"gpu_{s.nvml_index}_mig_mode", mode))
    if visible is not None:
        items.append(("cuda_visible_devices", visible))
    for gpu in gpus:
        items.append((f"sys.{gpu.device.key}", gpu.device.uuid))
        items.extend((f"sys.{mig.key}", mig.uuid) for mig in gpu.migs)
    return GpuFacts(gpu_static_info(statics), [{"key": k, "value": v} for k, v in items])


class GpuSampler:
    """Sample the reported GPUs: sys.gpu.* metrics, the add-gpu-metrics body, health events.

    A device that does not support a field has it left out and named in
    ``Sample.unsupported`` ("gpu.1.fan_speed"). A GPU that is lost gets one
    ``gpu.lost`` event and is not sampled again; the others go on. Any other
    failure of a device or field gets one ``gpu.error`` event when it starts
    or changes; a sample with neither data nor events raises the first error.
    """

    name = "gpu"

    def __init__(
        self,
        nvml: Nvml,
        gpus: Sequence[ReportedGpu],
        *,
        visible: str | None = None,
        watched_pids: PidSource | None = None,
        clock: Clock = now_ms,
        notes: Sequence[str] = (),
        deadline_s: float | None = None,
        proc: Path = Path("/proc"),
    ) -> None:
        self._nvml = nvml
        # One sample's time, all GPUs together: the per-call budget alone lets a driver that
        # answers just under it stall one sample of eight GPUs for minutes.
        self._deadline_s = deadline_s
        self._proc = proc
        self._nspids: dict[int, tuple[int, ...]] = {}  # watched pid → its pids in every namespace
        self._gpus = list(gpus)
        self._by_uuid = {g.device.uuid: g.device for g in gpus}  # lost ones stay: late XIDs
        self._visible = visible
        self._watched = watched_pids
        self._clock = clock
        self._health = GpuHealth()
        self._total_sent: set[str] = set()  # total_memory goes once per device, as the SDK does
        self.notes: tuple[str, ...] = tuple(notes)  # one-line remarks for the caller to log once
        try:
            nvml.watch_xid([(g.device.handle, g.device.label) for g in self._gpus])
        except CollectorError as exc:
            self.notes += (f"XID events are off: {exc}",)

    @property
    def devices(self) -> list[ReportedGpu]:
        """The GPUs still reported (lost ones removed)."""
        return list(self._gpus)

    def facts(self) -> GpuFacts:
        """Return the static GPU facts for Set System Details."""
        return gpu_facts(self._nvml, self._gpus, self._visible)

    def close(self) -> None:
        """Shut NVML down."""
        self._nvml.close()

    def collect(self) -> Sample:
        """Read every reported GPU now."""
        ts = self._clock()
        if not self._gpus:
            raise GpuLost("every reported GPU is lost; restart the agent once nvidia-smi sees them")
        metrics: dict[str, Number] = {}
        usages: list[GpuUsage] = []
        unsupported: set[str] = set()
        events = self._poll_xid(ts)
        pids: set[int] | None = None
        if self._watched is not None:
            try:
                pids = self._watched()
                events += self._health.failures("processes", {}, ts)
            except CollectorError as exc:  # process_memory is skipped, the rest goes on
                events += self._health.failures("processes", {"processes": f"{exc}"}, ts)
        if pids:
            pids = self._with_nspids(pids)
        self._nvml.set_deadline(self._deadline_s)
        try:
            found, first_error = self._sample_all(ts, pids, metrics, usages, unsupported)
        finally:
            self._nvml.set_deadline(None)
        events += found
        if not metrics and not events:
            raise first_error or CollectorError("no GPU gave a reading")
        readings = (GpuUsages(tuple(usages)),) if usages else ()
        return Sample(ts, metrics, readings, events, frozenset(unsupported))

    def _sample_all(
        self,
        ts: int,
        pids: set[int] | None,
        metrics: dict[str, Number],
        usages: list[GpuUsage],
        unsupported: set[str],
    ) -> tuple[list[HealthEvent], CollectorError | None]:
        events: list[HealthEvent] = []
        first_error: CollectorError | None = None
        late: list[str] = []
        for gpu in list(self._gpus):
            if late:
                late.append(gpu.device.label)
                continue
            try:
                events += self._sample_gpu(gpu, ts, pids, metrics, usages, unsupported)
            except SampleDeadline:
                late.append(gpu.device.label)
            except GpuLost:
                self._gpus.remove(gpu)
                events.append(
                    self._health.lost(gpu.device.key, gpu.device.label, gpu.device.uuid, ts)
                )
            except CollectorError as exc:
                first_error = first_error or exc
                events += self._health.failures(gpu.device.key, {gpu.device.key: str(exc)}, ts)
                if isinstance(exc, NvmlStuck):
                    break  # the rest would fail fast; they are read again next time
        found = {}
        if late:
            # The GPUs not reached go first next time, so a slow driver cannot starve the last.
            behind = [g for g in self._gpus if g.device.label in late]
            self._gpus = behind + [g for g in self._gpus if g.device.label not in late]
            found["deadline"] = (
                f"the GPU sample took longer than {self._deadline_s:g} s; "
                f"{', '.join(late)} not read this time (read first next time)"
            )
        events += self._health.failures("deadline", found, ts)
        return events, first_error

    def _host_pids(self, reading: GpuReading) -> bool:
        """Whether NVML's processes carry pids this /proc does not have (all of them)."""
        procs = reading.processes or ()
        return bool(procs) and not any((self._proc / str(p.pid)).exists() for p in procs)

    def _with_nspids(self, pids: set[int]) -> set[int]:
        """Add each watched pid's ids in the other PID namespaces /proc shows (NSpid).

        NVML reports the pids of the namespace the driver sees; where the
        agent reads a host /proc, a container's process has both.
        """
        out = set(pids)
        for pid in pids:
            ids = self._nspids.get(pid)
            if ids is None:
                try:
                    ids = parse_nspid(read_small(self._proc / str(pid) / "status"))
                except CollectorError:  # gone meanwhile, or a kernel without NSpid
                    ids = ()
                self._nspids[pid] = ids
            out.update(ids)
        for gone in set(self._nspids) - pids:
            del self._nspids[gone]
        return out

    def _poll_xid(self, ts: int) -> list[HealthEvent]:
        try:
            found = self._nvml.poll_xid()
        except CollectorError as exc:
            return self._health.failures("xid", {"xid": f"GPU events: {exc}"}, ts)
        events = []
        for event in found.events:
            device = self._by_uuid.get(event.uuid or "")
            key, label = (device.key, device.label) if device else ("gpu", str(event.uuid))
            events.append(
                self._health.xid(
                    key, label, event.xid, ts, event.gpu_instance, event.compute_instance
                )
            )
        # A lost GPU is told by its own gpu.lost event when it is read next, after its XIDs.
        error = found.error
        failed = {}
        if error is not None and not isinstance(error, GpuLost):
            failed["xid"] = f"GPU events: {error}"
        return self._health.failures("xid", failed, ts) + events

    def _sample_gpu(
        self,
        gpu: ReportedGpu,
        ts: int,
        pids: set[int] | None,
        metrics: dict[str, Number],
        usages: list[GpuUsage],
        unsupported: set[str],
    ) -> list[HealthEvent]:
        dev = gpu.device
        reading = self._nvml.read(dev.handle, dev.label, processes=pids is not None)
        events = self._record(dev, reading, pids, metrics, unsupported, ts)
        if (
            reading.gpu_utilization_percent is not None
            and reading.total_bytes is not None
            and reading.used_bytes is not None
            and reading.free_bytes is not None
        ):
            usages.append(
                GpuUsage(
                    gpu_id=dev.position,
                    free_bytes=reading.free_bytes,
                    used_bytes=reading.used_bytes,
                    total_bytes=reading.total_bytes,
                    utilization_percent=reading.gpu_utilization_percent,
                )
            )
        events += self._health.ecc(dev.key, dev.label, "corrected", reading.ecc_corrected, ts)
        events += self._health.ecc(dev.key, dev.label, "uncorrected", reading.ecc_uncorrected, ts)
        events += self._health.throttle(dev.key, dev.label, reading.throttle_reasons, ts)
        for mig in gpu.migs:
            try:
                part = self._nvml.read(
                    mig.handle, mig.label, whole_gpu=False, processes=pids is not None
                )
            except (StaleHandle, NoData) as exc:
                # MIG handles are invalidated (and their slots reused) when instances are
                # destroyed or re-created: find them again, read them next time.
                events += self._rediscover(gpu, mig, exc, ts)
                break
            except (GpuLost, NvmlStuck, SampleDeadline):
                raise
            except CollectorError as exc:
                events += self._health.failures(mig.key, {mig.key: str(exc)}, ts)
                continue
            events += self._record(mig, part, pids, metrics, unsupported, ts)
        return events

    def _rediscover(
        self, gpu: ReportedGpu, mig: Device, exc: CollectorError, ts: int
    ) -> list[HealthEvent]:
        """Look up a GPU's MIG instances again after NVML refused one of their handles."""
        dev = gpu.device
        told = self._health.failures(
            mig.key, {mig.key: f"{exc}; the MIG instances of {dev.label} are looked up again"}, ts
        )
        try:
            found = self._nvml.mig_devices(dev.handle, dev.label)
            fresh = tuple(
                Device(
                    f"{dev.key}.mig.{j}",
                    f"{dev.label} MIG {j}",
                    dev.position,
                    self._nvml.uuid(handle, f"{dev.label} MIG {j}"),
                    handle,
                )
                for j, handle in found
            )
        except (GpuLost, NvmlStuck, SampleDeadline):
            raise
        except CollectorError as error:
            return told + self._health.failures(dev.key, {f"{dev.key}.mig": str(error)}, ts)
        self._gpus[self._gpus.index(gpu)] = replace(gpu, migs=fresh)
        self._by_uuid.update((m.uuid, m) for m in fresh)
        return told

    def _record(
        self,
        dev: Device,
        reading: GpuReading,
        pids: set[int] | None,
        metrics: dict[str, Number],
        unsupported: set[str],
        ts: int,
    ) -> list[HealthEvent]:
        """Add one device's metrics; return events for its failed fields."""
        prefix = f"sys.{dev.key}."
        total, used = reading.total_bytes, reading.used_bytes
        if total is not None and used is not None and reading.free_bytes is not None:
            if dev.key not in self._total_sent:  # a sample with metrics is always returned
                metrics[prefix + "total_memory"] = total
                self._total_sent.add(dev.key)
            metrics[prefix + "used_memory"] = used
            metrics[prefix + "free_memory"] = reading.free_bytes
            if total > 0:
                metrics[prefix + "percent.used_memory"] = used / total * 100
        for attr, name in _FIELDS:
            value = getattr(reading, attr)
            if value is not None:
                metrics[prefix + name] = value
        if reading.throttle_reasons is not None:
            metrics[prefix + "throttled"] = int(throttling(reading.throttle_reasons) != 0)
        failed: dict[str, str] = {}
        if pids is not None and reading.processes is not None:
            held = [p.used_bytes for p in reading.processes if p.pid in pids]
            if held or not self._host_pids(reading):
                # Ours, or only other processes this /proc knows: what we hold is measured.
                if all(b is not None for b in held):
                    metrics[prefix + "process_memory"] = sum(b for b in held if b is not None)
            else:
                # Processes hold memory, none of them ours as far as /proc can tell: older
                # drivers give host pids inside a container's PID namespace. Unknown is not 0.
                failed[f"{dev.key}.process_memory"] = (
                    f"{dev.label}: none of the {len(reading.processes)} processes NVML lists "
                    f"exists in {self._proc} (host PIDs inside a container's PID namespace?); "
                    "process_memory is left out; run the agent in the host PID namespace"
                )
        for attr in reading.unsupported:
            unsupported.add(f"{dev.key}.{_NAMES[attr]}")
            if attr == "throttle_reasons":
                unsupported.add(f"{dev.key}.throttled")
        failed.update({f"{dev.key}.{_NAMES[attr]}": msg for attr, msg in reading.errors})
        return self._health.failures(dev.key, failed, ts)


def gpu_sampler(
    settings: Settings,
    *,
    lib: object = None,
    watched_pids: PidSource | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Clock = now_ms,
    on_unavailable: Callable[[str], None] | None = None,
    proc: Path = Path("/proc"),
) -> GpuSampler | None:
    """Return the GPU sampler, or None when there is nothing to sample.

    The reason for None (NVML missing, driver not loaded, no GPU visible,
    GPU sampling switched off) goes to `on_unavailable`, one line for the
    caller to log at INFO; CPU sampling is unaffected. `lib` is the pynvml
    module (tests pass the fake); `environ` is where CUDA_VISIBLE_DEVICES is read.
    """

    def off(reason: str) -> None:
        if on_unavailable is not None:
            on_unavailable(reason)

    if not settings.sample_gpu:
        off("GPU sampling is off ([sampling] gpu = false)")
        return None
    visible = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    try:
        nvml = Nvml(lib, settings.nvml_timeout_s)
    except NvmlUnavailable as exc:
        off(str(exc))
        return None
    try:
        gpus, notes = discover(nvml, visible)
    except CollectorError as exc:
        nvml.close()
        off(f"cannot list the GPUs: {exc}; GPU sampling is off")
        return None
    if not gpus:
        nvml.close()
        why = f"CUDA_VISIBLE_DEVICES={visible!r} names" if visible is not None else "NVML sees"
        off(f"{why} no GPU; GPU sampling is off" + "".join(f" ({n})" for n in notes))
        return None
    return GpuSampler(
        nvml,
        gpus,
        visible=visible,
        watched_pids=watched_pids,
        clock=clock,
        notes=notes,
        deadline_s=max(1.0, 2 * settings.nvml_timeout_s),
        proc=proc,
    )


def read_gpu_facts(
    settings: Settings,
    *,
    lib: object = None,
    environ: Mapping[str, str] | None = None,
    on_unavailable: Callable[[str], None] | None = None,
) -> GpuFacts | None:
    """Open NVML, read the static GPU facts, close it; None (and the reason) when unavailable.

    For callers without a running sampler (``comet-agent sysinfo``); the
    daemon asks its sampler's ``facts()`` instead.
    """
    sampler = gpu_sampler(settings, lib=lib, environ=environ, on_unavailable=on_unavailable)
    if sampler is None:
        return None
    try:
        return sampler.facts()
    except CollectorError as exc:
        if on_unavailable is not None:
            on_unavailable(f"cannot read the GPU facts: {exc}")
        return None
    finally:
        sampler.close()
