"""The samplers of a run, grouped by job, and what taking one sample of a group involves.

The ``cpu`` group (CPU, RAM, load, disk, network, the watched process tree)
and the ``gpu`` group each run as one scheduled job. A sampler that fails is
logged once and then rate-limited, the others go on; fields a device cannot
give are logged once; health events go to the log, the run's output and a Log
Other item. Each sample is logged at DEBUG (``sample.queued``) after its
messages were written: the fault suite compares those lines with what arrived.
``take(group)`` is the reading alone (``comet-agent sample`` prints it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence

from agent import log
from agent.api import bodies
from agent.collect.base import HealthEvent, Roots, Sample, Sampler
from agent.collect.nvml_library import missing_library
from agent.config import Settings
from agent.errors import CollectorError, NoData
from agent.lifecycle.samples import Channels, to_messages
from agent.message import Kind, Message

logger = log.get_logger(__name__)
Put = Callable[[Sequence[Message]], bool]  # write messages; False when held in memory
Line = Callable[[str], None]  # a line for the run's output (stderr)
Taken = list[tuple[str, Sample | CollectorError]]  # per sampler, in order: its sample or error
FINAL_GAP_S = 0.5  # a last sample closer than this to the previous one measures nothing


class Sampling:
    """Build the samplers for a pid, and take samples of a group."""

    def __init__(
        self,
        settings: Settings,
        roots: Roots,
        limiter: log.RateLimiter,
        *,
        one_shot: bool = False,
    ) -> None:
        self._settings = settings
        # A command's single look (`comet-agent sample`), not a daemon: pynvml is asked
        # directly (the library check first only spares a long-lived daemon pynvml's
        # memory), and why the GPU is off is the caller's to print (`gpu_note`), not logged.
        self._one_shot = one_shot
        self._roots = roots
        self._limiter = limiter
        self.groups: dict[str, list[Sampler]] = {}
        self.gpu_note: str | None = None
        self._unsupported_seen: set[str] = set()
        self._state: dict[str, dict[str, object]] = {}
        # Sampling jobs change it while the status job copies it (json.dump iterates in
        # Python: a change mid-way once raised and stopped the agent at start-up).
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._last_run: dict[str, float] = {}

    def gpu(self, pid: int | None) -> Sampler | None:
        """The GPU sampler (made on first use), or None when NVML or the GPUs are not there."""
        if "gpu" in self.groups:
            return self.groups["gpu"][0] if self.groups["gpu"] else None

        def off(reason: str) -> None:
            self.gpu_note = reason
            if not self._one_shot:
                logger.info("gpu.off", reason=reason)

        missing = missing_library() if self._settings.sample_gpu and not self._one_shot else None
        if missing is not None:  # without the driver, pynvml is never imported
            off(missing)
            self.groups["gpu"] = []
            return None
        from agent.collect import gpu

        self._pid = pid
        watched = self._watched_pids if pid else None
        sampler = gpu.gpu_sampler(self._settings, watched_pids=watched, on_unavailable=off)
        if sampler is not None and not self._one_shot:
            for note in sampler.notes:
                logger.info("gpu.note", note=note)
        self.groups["gpu"] = [sampler] if sampler is not None else []
        return sampler

    def build(self, pid: int | None) -> None:
        """Make every sampler the settings ask for, for the process tree of `pid`."""
        from agent.collect.system import system_samplers

        self.groups["cpu"] = system_samplers(self._settings, roots=self._roots, pid=pid)
        self.gpu(pid)

    def _watched_pids(self) -> set[int]:
        from agent.collect import process

        # Pids as this /proc sees them: the host's when the agent runs on the host, which is
        # what NVML reports. Inside a container of its own the agent sees container pids.
        return process.tree_pids(self._pid or os.getpid(), roots=self._roots)

    def sample(
        self,
        group: str,
        key: str,
        channels: Channels,
        put: Put,
        line: Line | None = None,
        *,
        final: bool = False,
    ) -> None:
        """Take one sample of every sampler in `group`, write the messages, log each sample.

        The `final` sample at stop is skipped when the group was sampled a moment ago: its
        utilisation would cover a few milliseconds (noise, often 0 %), and the one just
        taken already holds the latest state.
        """
        now = time.monotonic()
        if final and now - self._last_run.get(group, float("-inf")) < FINAL_GAP_S:
            return
        self._last_run[group] = now
        messages: list[Message] = []
        taken: list[tuple[str, Sample, int]] = []
        for name, got in self.take(group):
            sample = self._record(name, got)
            if sample is None:
                continue
            queued = to_messages(sample, key, channels)
            messages.extend(queued)
            taken.append((name, sample, len(queued)))
        written = put(messages)
        for name, sample, count in taken:
            # `items`: metric-batch items; `written`: false while held in memory.
            logger.debug(
                "sample.queued",
                collector=name,
                timestamp_ms=sample.timestamp_ms,
                messages=count,
                items=len(sample.metrics),
                written=written,
            )
            self._events(sample.events, key, put, line)
            self._unsupported(name, sample)

    def take(self, group: str) -> Taken:
        """Read every sampler in `group` once: its sample, or the error it raised.

        Nothing is logged or counted here; ``sample()`` does that."""
        taken: Taken = []
        for sampler in self.groups.get(group, []):
            try:
                taken.append((sampler.name, sampler.collect()))
            except CollectorError as exc:
                taken.append((sampler.name, exc))
        return taken

    def _record(self, name: str, got: Sample | CollectorError) -> Sample | None:
        """Count and log one reading (a failure once, then rate-limited); the sample or None."""
        with self._lock:
            state = self._state.setdefault(name, {"failures": 0})
        if isinstance(got, NoData):
            logger.debug("collector.no_data", collector=name, error=str(got))
            return None
        if isinstance(got, CollectorError):
            with self._lock:
                state["failures"] = int(state["failures"]) + 1  # type: ignore[call-overload]
                state["last_error"] = str(got)
            repeats = self._limiter.check(f"collector:{name}")
            if repeats is not None:
                logger.warning("collector.failed", collector=name, error=str(got), repeats=repeats)
            return None
        if self._limiter.reset(f"collector:{name}"):
            logger.info("collector.recovered", collector=name)
        with self._lock:
            state["last_ok_ms"] = got.timestamp_ms
        return got

    def _events(self, events: Sequence[HealthEvent], key: str, put: Put, line: Line | None) -> None:
        for event in events:
            logger.warning("health.event", kind=event.kind, message=event.message)
            if line is not None:
                line(f"[comet-agent] {event.message}\n")
            body = bodies.log_other(f"comet_agent.{event.kind}", event.message, event.timestamp_ms)
            put([Message("log-other", key, body, event.timestamp_ms, Kind.FACT)])

    def _unsupported(self, name: str, sample: Sample) -> None:
        for field_name in sorted(sample.unsupported - self._unsupported_seen):
            self._unsupported_seen.add(field_name)
            logger.info("collector.unsupported", collector=name, field=field_name)

    def collectors(self) -> dict[str, dict[str, object]]:
        """Per collector: failures, last error, last good sample (a copy, for the status)."""
        with self._lock:
            return {name: dict(state) for name, state in self._state.items()}

    def close(self) -> None:
        """Release what the samplers hold (NVML)."""
        for samplers in self.groups.values():
            for sampler in samplers:
                sampler.close()
