"""The job scheduler: interval jobs, each on its own timer thread, planned on the monotonic clock.

No executor: each job has one daemon thread that sleeps until the job is due
and runs it in place, so a tick costs one wake-up and nothing is handed from
thread to thread (APScheduler's thread-pool hand-off per run was the largest
share of an idle agent's CPU). One thread per job keeps the rules the agent
relies on: a slow keep-alive never delays a sample, a job never runs twice at
once, and runs missed while it was busy coalesce into the next slot instead of
bursting. Every job is wrapped by ``guarded`` so no exception ends its thread.
``reschedule`` only touches a job whose interval really changed, and the run
at the new pace comes one new interval from now (or sooner, if it was due
sooner), so a keep-alive every 10 s never starves a 60 s job.

Times are monotonic, so a wall-clock step (NTP, suspend, ``date -s``) does not
stall or burst the jobs. ``ClockWatch`` still notices such a step, which the
daemon logs, and ``resync`` restarts every job's spacing from now.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.errors import AgentError
from agent.log import RateLimiter, get_logger

log = get_logger(__name__)
Job = Callable[[], None]


def guarded(job_id: str, fn: Job, limiter: RateLimiter | None = None) -> Job:
    """Wrap a job so that no exception ends its thread; log expected failures rate-limited."""
    limiter = limiter or RateLimiter()

    def run() -> None:
        try:
            fn()
        except AgentError as exc:
            repeats = limiter.check(f"{job_id}:{type(exc).__name__}")
            if repeats is not None:
                log.warning("job.failed", job=job_id, error=str(exc), repeats=repeats)
        except Exception:
            log.exception("job.crashed", job=job_id)

    return run


@dataclass
class _Entry:
    fn: Job
    interval_s: float
    due: float  # monotonic seconds of the next run
    thread: threading.Thread | None = None


@dataclass
class Scheduler:
    """Interval jobs by id: first run at once, rescheduled only when the interval changes."""

    workers: int = 4  # kept for callers; each job has its own thread
    _jobs: dict[str, _Entry] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _closing: bool = False
    _running: bool = False

    def add(
        self,
        job_id: str,
        fn: Job,
        interval_s: float,
        *,
        run_now: bool = True,
        first_in_s: float = 0.0,
    ) -> None:
        """Schedule `fn` every `interval_s` seconds: first after `first_in_s` (at once by
        default), or after a whole interval when `run_now` is false."""
        wait_s = min(first_in_s, interval_s) if run_now else interval_s
        with self._cond:
            old = self._jobs.get(job_id)
            entry = _Entry(fn, interval_s, time.monotonic() + wait_s)
            if old is not None:  # replace in place: the job's thread reads the entry each turn
                old.fn, old.interval_s, old.due = entry.fn, entry.interval_s, entry.due
                self._cond.notify_all()
                return
            self._jobs[job_id] = entry
            if self._running:
                self._spawn(job_id, entry)

    def interval(self, job_id: str) -> float:
        """The interval a job runs at now, in seconds."""
        with self._cond:
            return self._jobs[job_id].interval_s

    def reschedule(self, job_id: str, interval_s: float) -> bool:
        """Change a job's interval if it differs; return whether it changed."""
        with self._cond:
            entry = self._jobs.get(job_id)
            if self._closing or entry is None or entry.interval_s == interval_s:
                return False
            entry.interval_s = interval_s
            # The first run at the new pace comes one new interval from now; a job that was
            # due sooner keeps its earlier slot, so a shorter interval takes effect fast.
            entry.due = min(entry.due, time.monotonic() + interval_s)
            self._cond.notify_all()
        return True

    def resync(self) -> None:
        """Restart every job's spacing from now (after a wall-clock jump)."""
        with self._cond:
            if self._closing:
                return
            now = time.monotonic()
            for entry in self._jobs.values():
                entry.due = now + entry.interval_s
            self._cond.notify_all()

    def run_now(self, job_id: str) -> None:
        """Run a job once in the calling thread (the last sample at stop)."""
        with self._cond:
            entry = self._jobs.get(job_id)
        if entry is not None:
            entry.fn()

    def start(self) -> None:
        """Start one timer thread per job (and for jobs added later, at add)."""
        with self._cond:
            if self._running or self._closing:
                return
            self._running = True
            for job_id, entry in self._jobs.items():
                self._spawn(job_id, entry)

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with `wait`, let running jobs finish.

        From here on reschedule() and resync() do nothing, so a job that reschedules
        while stopping (a keep-alive answered during the stop) finishes at once.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            threads = [e.thread for e in self._jobs.values() if e.thread is not None]
        if wait:
            me = threading.current_thread()
            for thread in threads:
                if thread is not me:
                    thread.join()

    def _spawn(self, job_id: str, entry: _Entry) -> None:
        entry.thread = threading.Thread(
            target=self._loop, args=(entry,), name=f"job-{job_id}", daemon=True
        )
        entry.thread.start()

    def _loop(self, entry: _Entry) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._closing:
                    wait_s = entry.due - time.monotonic()
                    if wait_s <= 0:
                        break
                    cond.wait(wait_s)
                if self._closing:
                    return
                fn = entry.fn
                ran_at = entry.due
            fn()
            with cond:
                if entry.due == ran_at:  # not moved by reschedule/resync while it ran
                    now = time.monotonic()
                    step = entry.interval_s
                    due = ran_at + step
                    if due <= now:  # late: coalesce the missed slots into the next one
                        due += step * (int((now - due) / step) + 1)
                    entry.due = due


class ClockWatch:
    """Notice the wall clock jumping against the monotonic clock."""

    def __init__(
        self,
        threshold_s: float = 2.0,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold_s = threshold_s
        self._wall = wall
        self._mono = mono
        self._offset = wall() - mono()

    def jumped(self) -> float | None:
        """Return the jump in seconds since the last call (signed), or None when steady."""
        offset = self._wall() - self._mono()
        delta = offset - self._offset
        self._offset = offset
        return delta if abs(delta) >= self._threshold_s else None
