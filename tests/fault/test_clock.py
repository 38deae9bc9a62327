"""Wall-clock jumps under libfaketime: the real agent subprocess sees its clock step ±1 h.

libfaketime (Debian package ``faketime``) is preloaded into the agent only; the offset is
read from a file the test rewrites (``FAKETIME_TIMESTAMP_FILE``, re-read every second), and
the monotonic clock is left alone (``FAKETIME_DONT_FAKE_MONOTONIC``), which is what an NTP
step or ``date -s`` does. The tests skip, saying why, where the library is not installed.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.checker import assert_delivered, check, taken_from, wait_delivered
from tests.fault.lifecycle import stop_agent
from tests.helpers import wait_until

LIBFAKETIME = next(
    (
        p
        for p in (
            Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"),
            Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"),
            Path("/usr/lib/faketime/libfaketimeMT.so.1"),
        )
        if p.exists()
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    LIBFAKETIME is None, reason="libfaketime not installed (apt-get install faketime)"
)
HOUR_S = 3600
LAG_S = 1.5  # libfaketime re-reads the offset file every second


class FakeClock:
    """The offset file libfaketime reads, and when (real time) each offset began."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changes: list[tuple[float, int]] = []
        self.set(0)

    def set(self, offset_s: int) -> None:
        self.path.write_text(f"{offset_s:+d}\n")
        self.changes.append((time.time(), offset_s))

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


@pytest.fixture(name="clock")
def _clock(tmp_path: Path) -> FakeClock:
    return FakeClock(tmp_path / "faketime")


def _segments(stamps: list[int]) -> list[list[int]]:
    """Split sample stamps where they jump by more than half an hour."""
    out: list[list[int]] = [[]]
    for stamp in stamps:
        if out[-1] and abs(stamp - out[-1][-1]) > HOUR_S * 500:
            out.append([])
        out[-1].append(stamp)
    return out


def test_clock_jumps_keep_spacing_and_true_timestamps(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
    clock: FakeClock,
) -> None:
    """The wall clock steps +1 h, then -1 h, while the agent samples every second.

    Bar: sampling never stalls nor bursts (3 samples within 6 s after each step, every gap
    between samples of one clock under 4 s, never two in a row under 0.3 s); every sample's
    timestamp is the agent's wall clock when it was taken (real time + the offset in force
    then, within the 1.5 s libfaketime lag); each step is logged once as clock.jumped; zero
    lost, no reordering (in the order the agent took them), duplicates 0.
    """
    agent, key = start_agent({**agent_env, **clock.env()})
    wait_until(lambda: len(agent.samples()) >= 3, timeout_s=10)
    for offset in (HOUR_S, 0):
        before = len(agent.samples())
        clock.set(offset)
        wait_until(lambda n=before: len(agent.samples()) >= n + 3, timeout_s=6 + LAG_S)
    wait_until(lambda: len(agent.named("clock.jumped")) >= 2, timeout_s=5)
    wait_delivered(server, lambda: taken_from(agent.named("sample.queued")), key, timeout_s=20)
    assert stop_agent(agent) == 0
    taken = taken_from(agent.named("sample.queued"))
    assert_delivered(check(server, taken, key), context=f"clock steps {clock.changes}")
    jumps = [float(e["jump_s"]) for e in agent.named("clock.jumped")]  # type: ignore[arg-type]
    assert [round(j / HOUR_S) for j in jumps] == [1, -1], jumps
    cpu = [t.timestamp_ms for t in taken if t.collector == "cpu"][:-1]  # the stop's comes early
    segments = _segments(cpu)
    assert len(segments) == 3, [(s[0], s[-1]) for s in segments]
    (start, _), (forward_at, _), (back_at, _) = clock.changes
    windows = [(start, forward_at), (forward_at, back_at), (back_at, time.time())]
    for stamps, (since, until), offset in zip(segments, windows, (0, HOUR_S, 0), strict=True):
        real_s = [s / 1000 - offset for s in stamps]
        assert since - 60 <= real_s[0] and real_s[-1] <= until + LAG_S, (since, until, real_s)
        gaps = [b - a for a, b in itertools.pairwise(real_s)]
        # A stall would be a gap of minutes (or the hour stepped); a burst, several samples
        # in a row a moment apart. One late sample (a loaded CI machine) followed by one on
        # its planned slot is neither.
        assert all(g < 4.0 for g in gaps), gaps
        assert not any(a < 0.3 and b < 0.3 for a, b in itertools.pairwise(gaps)), gaps


def test_clock_step_back_during_an_outage_does_not_park_the_backlog(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
    clock: FakeClock,
) -> None:
    """The wall clock steps back 1 h while the sender backs off from a 503 outage; then
    Comet recovers.

    Bar: the backlog is delivered within 15 s of the recovery (not an hour later): zero lost,
    no reordering, duplicates 0.
    """
    agent, key = start_agent({**agent_env, **clock.env()})
    wait_until(lambda: server.count("add-cpu-metrics") >= 1, timeout_s=10)
    server.outage(status=503)
    wait_until(lambda: len(agent.named("outbox.deferred")) >= 1, timeout_s=10)
    clock.set(-HOUR_S)
    wait_until(lambda: len(agent.named("clock.jumped")) >= 1, timeout_s=5)
    server.recover()
    wait_delivered(server, lambda: taken_from(agent.named("sample.queued")), key, timeout_s=15)
    assert stop_agent(agent) == 0
    taken = taken_from(agent.named("sample.queued"))
    assert_delivered(check(server, taken, key), context=f"clock steps {clock.changes}")


def test_libfaketime_is_used_by_the_agent_only(clock: FakeClock) -> None:
    """The test process keeps the real clock (the stand-in and the test judge by it)."""
    assert "LD_PRELOAD" not in os.environ or "faketime" not in os.environ["LD_PRELOAD"]
    assert clock.path.read_text() == "+0\n"
