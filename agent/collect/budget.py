"""Calls under a time budget: one worker thread runs them in order, the caller waits at most N s.

For libraries that can block inside the kernel (NVML on a wedged driver):
the call may stall the worker, never the caller. After one overruns, every
later call fails fast with the same message until the late call returns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from agent.errors import CollectorError

T = TypeVar("T")


class Overrun(CollectorError):
    """A call overran its time budget, or an earlier one has not returned yet."""


class _Job:
    """One call handed to the worker, and what came of it."""

    def __init__(self, what: str, fn: Callable[[], Any]) -> None:
        self.what = what
        self.fn = fn
        self.done = threading.Event()
        self.abandoned = False
        self.result: Any = None
        self.error: Exception | None = None


def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while (job := jobs.get()) is not None:
        if not job.abandoned:
            try:
                job.result = job.fn()
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller, who raises it
                job.error = exc
        job.done.set()


class BudgetedWorker:
    """One daemon thread that runs calls in order; each caller waits at most `timeout_s`.

    `hint` ends the overrun message ("the driver may be wedged"); `resume`
    ends the fail-fast one ("GPU sampling resumes when it returns"); `error`
    is the Overrun subclass raised.
    """

    def __init__(
        self,
        timeout_s: float,
        *,
        name: str,
        hint: str,
        resume: str,
        error: type[Overrun] = Overrun,
    ) -> None:
        self.timeout_s = timeout_s
        self._hint = hint
        self._resume = resume
        self._error = error
        self._lock = threading.Lock()
        self._late: _Job | None = None
        self._closed = False
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # A daemon thread: a call wedged in the kernel must not keep the process alive.
        threading.Thread(target=_work, args=(self._jobs,), name=name, daemon=True).start()

    @property
    def stuck(self) -> bool:
        """Whether a call overran its budget and has not returned yet."""
        with self._lock:
            return self._late is not None and not self._late.done.is_set()

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` on the worker and return its result or raise what it raised.

        `what` names the call in messages ("NVML call nvmlInit"). Raises
        `error` when it takes longer than the budget, or at once while an
        earlier call is still out.
        """
        with self._lock:
            if self._closed:
                raise CollectorError(f"{what}: the worker is shut down")
            late = self._late
            if late is not None:
                if not late.done.is_set():
                    raise self._error(
                        f"{late.what} has not returned after {self.timeout_s:g} s; "
                        f"{self._hint}; {self._resume}"
                    )
                self._late = None
        job = _Job(what, fn)
        self._jobs.put(job)
        if not job.done.wait(self.timeout_s):
            job.abandoned = True  # if it has not started yet, it never will
            with self._lock:
                self._late = job
            raise self._error(f"{what} took longer than {self.timeout_s:g} s; {self._hint}")
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    def close(self) -> None:
        """Let the thread end once its queue is done (at once, unless a call is stuck)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._jobs.put(None)
