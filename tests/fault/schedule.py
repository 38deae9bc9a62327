"""A timed fault schedule for the Comet stand-in: healthy, 503, drops, 429s, slow, HTML, cut.

``ScheduleDriver(server, STANDARD).run()`` walks the phases on a thread of its
own, flipping every route of the stand-in at once, and keeps a timeline
(``phase_at(ms)``) so a failure message can say what the server was doing
when a lost sample was taken. Durations are wall-clock seconds of the test.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.fakes.comet_server import CometStandIn

HTTP_TIMEOUT_S = 0.5  # the agent's COMET_TIMEOUT_HTTP in the fault suite
SLOW_DELAY_S = 1.0  # a slow answer comes after the agent's read timeout
# Keep-alive answer: sample every second, beat every second.
FAST = {
    "isAliveBeatDurationMillis": 1000,
    "cpuMonitorIntervalMillis": 1000,
    "gpuMonitorIntervalMillis": 1000,
}


@dataclass(frozen=True)
class Phase:
    """What the stand-in does for `duration_s`: healthy, or one of its fault modes."""

    name: str
    duration_s: float
    mode: str = "healthy"
    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def apply(self, server: CometStandIn) -> None:
        """Make the stand-in behave as this phase says, on every route."""
        if self.mode == "healthy":
            server.recover()
            return
        server.recover()  # no scripted single faults left over from the previous phase
        server.outage(
            mode=self.mode, status=self.status, headers=self.headers, delay_s=self.delay_s
        )


def healthy(duration_s: float) -> Phase:
    return Phase("healthy", duration_s)


def unavailable(duration_s: float) -> Phase:
    return Phase("503", duration_s, "status", 503)


def dropped(duration_s: float) -> Phase:
    return Phase("drop", duration_s, "drop")


def throttled(duration_s: float, retry_after_s: int = 1) -> Phase:
    return Phase(
        f"429 Retry-After {retry_after_s}",
        duration_s,
        "status",
        429,
        {"Retry-After": str(retry_after_s)},
    )


def throttled_custom(duration_s: float, retry_after_s: float = 0.5) -> Phase:
    return Phase(
        f"429 Retry-After-Custom {retry_after_s}",
        duration_s,
        "status",
        429,
        {"Retry-After-Custom": str(retry_after_s)},
    )


def slow(duration_s: float, delay_s: float = SLOW_DELAY_S) -> Phase:
    return Phase(f"slow {delay_s} s", duration_s, "slow", delay_s=delay_s)


def html(duration_s: float) -> Phase:
    return Phase("html", duration_s, "html")


def truncated(duration_s: float) -> Phase:
    return Phase("truncated", duration_s, "truncated")


# The schedule: every kind of fault once, healthy before and after.
STANDARD: tuple[Phase, ...] = (
    healthy(2),
    unavailable(3),
    dropped(2),
    throttled(2),
    throttled_custom(2),
    slow(2),
    html(2),
    truncated(2),
    healthy(0),
)
FAULTS = (unavailable, dropped, throttled, throttled_custom, slow, html, truncated)


def random_faults(rng: random.Random, total_s: float, longest_s: float = 2.0) -> list[Phase]:
    """Faults in a random order with random lengths, about `total_s` in all, then healthy."""
    phases: list[Phase] = []
    spent = 0.0
    while spent < total_s:
        length = round(rng.uniform(0.5, longest_s), 2)
        phases.append(rng.choice(FAULTS)(length))
        spent += length
    return [*phases, healthy(0)]


class ScheduleDriver:
    """Walk `phases` on a thread; ``stop()`` (or leaving the ``with``) recovers the stand-in."""

    def __init__(self, server: CometStandIn, phases: Sequence[Phase]) -> None:
        self._server = server
        self.phases = list(phases)
        self.timeline: list[tuple[float, str]] = []  # (time.time() it began, phase name)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._walk, name="fault-schedule", daemon=True)

    @property
    def total_s(self) -> float:
        """How long the whole schedule runs."""
        return sum(p.duration_s for p in self.phases)

    def start(self) -> ScheduleDriver:
        self._thread.start()
        return self

    def _walk(self) -> None:
        for phase in self.phases:
            if self._stop.is_set():
                break
            with self._lock:
                phase.apply(self._server)
                self.timeline.append((time.time(), phase.name))
            if self._stop.wait(phase.duration_s):
                break

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the last phase began (or `timeout_s` passed: then fail)."""
        limit = self.total_s + 10 if timeout_s is None else timeout_s
        self._thread.join(limit)
        if self._thread.is_alive():
            raise AssertionError(f"fault schedule still running after {limit} s")

    def stop(self) -> None:
        """End the schedule now and leave the stand-in healthy."""
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            self._server.recover()
            self.timeline.append((time.time(), "healthy"))

    def phase_at(self, at_ms: int) -> str:
        """The phase in force at `at_ms` (epoch ms), or "before" the schedule."""
        name = "before"
        with self._lock:
            for began, phase in self.timeline:
                if began * 1000 <= at_ms:
                    name = phase
        return name

    def describe(self) -> str:
        """The timeline as one line: phase names and their lengths."""
        return ", ".join(f"({p.name}, {p.duration_s:g} s)" for p in self.phases)

    def __enter__(self) -> ScheduleDriver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
