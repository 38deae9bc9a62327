"""The job scheduler: the only module that imports APScheduler (3.x).

A ``BackgroundScheduler``, because the main thread waits for signals (and for
the child under ``run``). Every job is wrapped by ``guarded`` so APScheduler
never sees an exception; jobs coalesce and never run twice at once, so a slow
NVML call delays one sample instead of stacking them. ``reschedule`` only
touches a job whose interval really changed: APScheduler counts the next run
from *now*, so rescheduling on every 10 s beat would starve a 60 s job.

APScheduler 3.x plans on the wall clock. ``ClockWatch`` notices the wall
clock jumping against the monotonic one (NTP step, suspend, an admin's
``date -s``) and ``resync`` then restarts every job's spacing from now:
without it a jump back of an hour stalls every job for an hour.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.errors import AgentError
from agent.log import RateLimiter, get_logger

log = get_logger(__name__)
Job = Callable[[], None]


def guarded(job_id: str, fn: Job, limiter: RateLimiter | None = None) -> Job:
    """Wrap a job so that no exception reaches APScheduler; log expected failures rate-limited."""
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


@dataclass
class Scheduler:
    """Interval jobs by id: first run at once, rescheduled only when the interval changes."""

    workers: int = 4
    _jobs: dict[str, _Entry] = field(default_factory=dict)
    # Held across every change a job may make to APScheduler, so that shutdown() can say
    # "no more changes" before APScheduler takes its own lock to wait for running jobs.
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: bool = False
    _aps: Any = None  # the BackgroundScheduler, made by the first add()

    @property
    def _sched(self) -> Any:
        # Imported on first use: `comet-agent run` starts the command before the jobs exist,
        # and APScheduler's import is time the command would otherwise wait.
        if self._aps is None:
            from apscheduler.executors.pool import ThreadPoolExecutor
            from apscheduler.schedulers.background import BackgroundScheduler

            self._aps = BackgroundScheduler(
                timezone=UTC,
                executors={"default": ThreadPoolExecutor(self.workers)},
                job_defaults={"coalesce": True, "max_instances": 1},
            )
        return self._aps

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
        with self._lock:
            self._jobs[job_id] = _Entry(fn, interval_s)
        wait_s = min(first_in_s, interval_s) if run_now else interval_s
        first = _now() + timedelta(seconds=wait_s)
        self._sched.add_job(
            fn,
            "interval",
            seconds=interval_s,
            id=job_id,
            replace_existing=True,
            next_run_time=first,
            misfire_grace_time=_grace(interval_s),
        )

    def interval(self, job_id: str) -> float:
        """The interval a job runs at now, in seconds."""
        with self._lock:
            return self._jobs[job_id].interval_s

    def reschedule(self, job_id: str, interval_s: float) -> bool:
        """Change a job's interval if it differs; return whether it changed."""
        with self._lock:
            entry = self._jobs.get(job_id)
            if self._closing or entry is None or entry.interval_s == interval_s:
                return False
            entry.interval_s = interval_s
            # The first run at the new pace comes one new interval from now; a job that was
            # due sooner keeps its earlier slot, so a shorter interval takes effect fast.
            job = self._sched.get_job(job_id)
            due = job.next_run_time if job is not None else None
            start = _now() + timedelta(seconds=interval_s)
            if due is not None and due < start:
                start = due
            self._sched.modify_job(
                job_id,
                trigger=_trigger(interval_s, start),
                misfire_grace_time=_grace(interval_s),
                next_run_time=start,
            )
        return True

    def resync(self) -> None:
        """Restart every job's spacing from now (after a wall-clock jump)."""
        with self._lock:
            if self._closing:
                return
            for job_id, entry in self._jobs.items():
                start = _now() + timedelta(seconds=entry.interval_s)
                self._sched.modify_job(
                    job_id, trigger=_trigger(entry.interval_s, start), next_run_time=start
                )

    def run_now(self, job_id: str) -> None:
        """Run a job once in the calling thread (the last sample at stop)."""
        with self._lock:
            entry = self._jobs.get(job_id)
        if entry is not None:
            entry.fn()

    def start(self) -> None:
        """Start the scheduler thread."""
        self._sched.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with `wait`, let running jobs finish.

        APScheduler 3.x holds its job-store lock while it waits for running jobs, so a job
        that rescheduled then (a keep-alive answered during the stop) would wait for ever:
        from here on reschedule() and resync() do nothing.
        """
        with self._lock:
            self._closing = True
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=wait)


def _now() -> datetime:
    return datetime.now(UTC)


def _grace(interval_s: float) -> int:
    # The default grace (1 s) drops runs on a busy host with a WARNING each; half an interval.
    return max(1, int(interval_s / 2))


def _trigger(interval_s: float, start: datetime) -> object:
    from apscheduler.triggers.interval import IntervalTrigger

    return IntervalTrigger(seconds=interval_s, start_date=start, timezone=UTC)


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
