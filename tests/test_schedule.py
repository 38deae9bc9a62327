"""The scheduler: first run at once, spacing kept, rescheduled only on change, nothing escapes."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import pytest

from agent.errors import CollectorError
from agent.schedule import ClockWatch, Scheduler, guarded
from tests.helpers import wait_until


@pytest.fixture(name="sched")
def _sched() -> Scheduler:
    sched = Scheduler(workers=2)
    sched.start()
    yield sched  # type: ignore[misc]
    sched.shutdown()


def test_first_run_now_then_at_the_interval(sched: Scheduler) -> None:
    """A job runs at once and then every interval."""
    runs: list[float] = []
    sched.add("tick", lambda: runs.append(time.monotonic()), 0.2)
    wait_until(lambda: len(runs) >= 4, timeout_s=5)
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert all(0.1 < gap < 0.5 for gap in gaps), gaps


def test_reschedule_only_when_changed(sched: Scheduler) -> None:
    """Rescheduling to the same interval is a no-op; a new interval takes effect."""
    runs: list[float] = []
    sched.add("tick", lambda: runs.append(time.monotonic()), 1.0)
    wait_until(lambda: len(runs) >= 1)
    assert sched.reschedule("tick", 1.0) is False
    assert sched.reschedule("tick", 0.1) is True
    assert sched.interval("tick") == 0.1
    start = len(runs)
    wait_until(lambda: len(runs) >= start + 5, timeout_s=3)


def test_no_overlap_and_coalesce(sched: Scheduler) -> None:
    """A slow job never runs twice at once; late runs coalesce instead of bursting."""
    active = [0]
    peak = [0]
    runs = [0]
    lock = threading.Lock()

    def slow() -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
            runs[0] += 1

    sched.add("slow", slow, 0.05)
    time.sleep(1.0)
    assert peak[0] == 1
    assert runs[0] <= 5  # 1 s / 0.3 s per run: no burst of the ~20 missed 0.05 s slots


def test_guarded_keeps_the_schedule() -> None:
    """A failing job is logged, never raised: both expected and unexpected failures."""
    calls = [0]

    def bad() -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise CollectorError("cannot read /proc/loadavg")
        raise RuntimeError("bug")

    job = guarded("sample.cpu", bad)
    job()
    job()
    assert calls[0] == 2


def test_resync_restarts_spacing(sched: Scheduler) -> None:
    """After resync every job keeps running at its interval."""
    runs: list[float] = []
    sched.add("tick", lambda: runs.append(time.monotonic()), 0.1)
    wait_until(lambda: len(runs) >= 2)
    sched.resync()
    start = len(runs)
    wait_until(lambda: len(runs) >= start + 3, timeout_s=3)


def test_clock_watch_sees_jumps() -> None:
    """A wall-clock step against the monotonic clock is reported with its sign."""
    wall = [1000.0]
    mono = [5.0]
    watch = ClockWatch(threshold_s=2.0, wall=lambda: wall[0], mono=lambda: mono[0])
    wall[0] += 1
    mono[0] += 1
    assert watch.jumped() is None
    wall[0] -= 3600
    mono[0] += 1
    assert watch.jumped() == pytest.approx(-3601)
    wall[0] += 10
    mono[0] += 1
    assert watch.jumped() == pytest.approx(9)


RESCHEDULE_DURING_SHUTDOWN = """
import threading
from agent.schedule import Scheduler

sched = Scheduler(workers=2)
running, release = threading.Event(), threading.Event()

def beat():  # a keep-alive whose answer comes while the agent is stopping
    running.set()
    release.wait(10)
    sched.reschedule("beat", 5.0)

sched.add("beat", beat, 1.0)
sched.start()
running.wait(10)
threading.Timer(0.3, release.set).start()
sched.shutdown(wait=True)
print("shut down")
"""


def test_shutdown_while_a_job_reschedules_does_not_hang() -> None:
    """A job that reschedules while shutdown(wait=True) waits for it: both finish.

    APScheduler 3.x (used before) held its job-store lock while it waited for running
    jobs, so a job calling get_job/modify_job then would wait for ever (in a subprocess: a
    hang here must not hang the test run).
    """
    result = subprocess.run(
        [sys.executable, "-c", RESCHEDULE_DURING_SHUTDOWN],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert result.stdout == "shut down\n", result.stderr


def test_first_run_can_wait_a_moment(sched: Scheduler) -> None:
    """first_in_s delays the first run (samplers primed a moment ago measure nothing yet)."""
    runs: list[float] = []
    added = time.monotonic()
    sched.add("tick", lambda: runs.append(time.monotonic()), 5.0, first_in_s=0.5)
    wait_until(lambda: len(runs) >= 1, timeout_s=5)
    assert 0.4 < runs[0] - added < 2.0


LEAN = """
import sys, threading, time
from agent.schedule import Scheduler

sched = Scheduler()
done = threading.Event()
names = set()
def tick():
    names.add(threading.current_thread().name)
    if len(names) >= 1:
        done.set()
sched.add("tick", tick, 0.05)
sched.add("other", lambda: names.add(threading.current_thread().name), 0.05)
sched.start()
done.wait(10)
time.sleep(0.3)
sched.shutdown()
print(sorted(names), "apscheduler" in sys.modules, "concurrent.futures" in sys.modules)
"""


def test_each_job_runs_on_its_own_timer_thread_without_an_executor() -> None:
    """No thread-pool hand-off per run (the largest share of an idle agent's CPU)."""
    result = subprocess.run(
        [sys.executable, "-c", LEAN], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout == "['job-other', 'job-tick'] False False\n", result.stderr
