"""One long-lived daemon thread that runs calls in order, for callers that must not wait forever.

The call may stall the worker, never the caller. A worker gives up waiting
in one or both of two ways:

- a time budget (NVML, which can block inside the kernel on a wedged
  driver): the caller waits at most ``budget_s``; after a call overruns,
  every later call fails fast with the same message until the late call
  returns;
- a stop event (the keep-alive, waiting out its read timeout): the caller
  waits until the call is done or the event is set, then gets ``Stopped``.

A call given up on before it started is never run. The thread is a daemon
and starts with the first call: a call wedged in the kernel or on the
network must not keep the process alive, and an agent that never makes a
call has no thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from agent.errors import AgentError

T = TypeVar("T")
_POLL_S = 0.1  # how often a caller with a stop event looks at it


class Overrun(AgentError):
    """A call overran its time budget, or an earlier one has not returned yet."""


class Stopped(AgentError):
    """The stop event was set before the call returned, or the worker is shut down."""


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


class Worker:
    """One daemon thread named `name` that runs calls in order; see the module for the waits.

    With `budget_s`, `overrun` is the exception raised when the budget runs
    out, `hint` ends its message ("the driver may be wedged") and `resume`
    ends the fail-fast one ("GPU sampling resumes when it returns").
    """

    def __init__(
        self,
        name: str,
        *,
        budget_s: float | None = None,
        stopping: threading.Event | None = None,
        overrun: type[Exception] = Overrun,
        hint: str = "",
        resume: str = "",
    ) -> None:
        self.name = name
        self.budget_s = budget_s
        self._stopping = stopping
        self._overrun = overrun
        self._hint = hint
        self._resume = resume
        self._lock = threading.Lock()
        self._late: _Job | None = None
        self._closed = False
        self._started = False
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()

    @property
    def stuck(self) -> bool:
        """Whether a call overran its budget and has not returned yet."""
        with self._lock:
            return self._late is not None and not self._late.done.is_set()

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` on the worker and return its result or raise what it raised.

        `what` names the call in messages ("NVML call nvmlInit"). Raises
        `overrun` when the call takes longer than the budget, or at once
        while an earlier call is still out; `Stopped` once the stop event is
        set, or when the worker is shut down.
        """
        with self._lock:
            if self._closed:
                raise Stopped(f"{what}: the {self.name} worker is shut down")
            late = self._late
            if late is not None:
                if not late.done.is_set():
                    raise self._overrun(
                        self._say(f"{late.what} has not returned after {self.budget_s:g} s")
                    )
                self._late = None
            if not self._started:
                self._started = True
                threading.Thread(
                    target=_work, args=(self._jobs,), name=self.name, daemon=True
                ).start()
        job = _Job(what, fn)
        self._jobs.put(job)
        if not self._wait(job):
            job.abandoned = True  # if it has not started yet, it never will
            if self._stopping is not None and self._stopping.is_set():
                raise Stopped(f"{what}: given up, the agent is stopping")
            with self._lock:
                self._late = job
            budget = f"{what} took longer than {self.budget_s:g} s"
            raise self._overrun(f"{budget}; {self._hint}" if self._hint else budget)
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    def _wait(self, job: _Job) -> bool:
        """Wait for `job` within the budget and until the stop event; say whether it is done."""
        if self._stopping is None:
            return job.done.wait(self.budget_s)
        deadline = None if self.budget_s is None else time.monotonic() + self.budget_s
        while True:
            left = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if job.done.wait(max(left, 0.0)):
                return True
            if self._stopping.is_set():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _say(self, first: str) -> str:
        return "; ".join(part for part in (first, self._hint, self._resume) if part)

    def close(self) -> None:
        """Let the thread end once its queue is done (at once, unless a call is stuck)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._jobs.put(None)
