"""Worker: one daemon thread runs calls in order; a caller waits at most a budget, or until stop."""

from __future__ import annotations

import functools
import threading
import time

import pytest

from agent.worker import Overrun, Stopped, Worker
from tests.fakes.nvml import Hang
from tests.helpers import wait_until


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_calls_run_in_order_on_one_daemon_thread_started_by_the_first() -> None:
    """No thread before the first call; then one daemon thread for every call, in order."""
    worker = Worker("test-order", budget_s=5.0)
    assert _threads("test-order") == []
    ran: list[tuple[int, str]] = []

    def note(n: int) -> int:
        ran.append((n, threading.current_thread().name))
        return n * 10

    results = [worker.call(f"call {n}", functools.partial(note, n)) for n in range(3)]
    assert results == [0, 10, 20]
    assert ran == [(0, "test-order"), (1, "test-order"), (2, "test-order")]
    [thread] = _threads("test-order")
    assert thread.daemon
    with pytest.raises(ZeroDivisionError):
        worker.call("divide", lambda: 1 / 0)  # raised to the caller, the thread lives on
    assert worker.call("after", lambda: "ok") == "ok"
    worker.close()
    thread.join(5)
    assert not thread.is_alive()


def test_an_overrun_fails_later_calls_fast_until_it_returns() -> None:
    """Budget: the caller waits at most the budget; then fail fast; then it works again."""

    class Wedged(Exception):
        pass

    worker = Worker(
        "test-budget", budget_s=0.3, overrun=Wedged, hint="it may be wedged", resume="it resumes"
    )
    hang = Hang("late")
    started = time.monotonic()
    with pytest.raises(Wedged) as caught:
        worker.call("call A", hang.read)
    assert time.monotonic() - started < 2
    assert str(caught.value) == "call A took longer than 0.3 s; it may be wedged"
    assert worker.stuck

    ran: list[str] = []
    started = time.monotonic()
    with pytest.raises(Wedged) as again:
        worker.call("call B", lambda: ran.append("B"))
    assert time.monotonic() - started < 0.2  # failed fast, without waiting the budget again
    assert str(again.value) == "call A has not returned after 0.3 s; it may be wedged; it resumes"

    hang.release.set()
    wait_until(lambda: not worker.stuck, timeout_s=5)
    assert worker.call("call C", lambda: "fine") == "fine"
    assert ran == []  # B was refused, never queued
    worker.close()


def test_a_call_queued_behind_an_overrun_is_never_run() -> None:
    """A call given up before it started does not run when the worker gets to it."""
    worker = Worker("test-queued", budget_s=0.3)
    first = Hang(1)
    errors: list[Exception] = []

    def call_first() -> None:
        try:
            worker.call("first", first.read)
        except Overrun as exc:
            errors.append(exc)

    late = threading.Thread(target=call_first)
    late.start()
    first.started.wait(5)
    ran: list[str] = []
    with pytest.raises(Overrun, match=r"^second took longer than 0.3 s$"):  # no hint: no tail
        worker.call("second", lambda: ran.append("second"))
    late.join(5)
    assert [str(e) for e in errors] == ["first took longer than 0.3 s"]
    first.release.set()
    wait_until(lambda: not worker.stuck, timeout_s=5)
    assert worker.call("third", lambda: "ran") == "ran"  # queued after the skipped one
    assert ran == []
    worker.close()


def test_the_stop_event_releases_a_waiting_caller() -> None:
    """Stop: no budget, the caller waits until the event is set, then gets Stopped."""
    stopping = threading.Event()
    worker = Worker("test-stop", stopping=stopping)
    slow = Hang("answer")
    caller_saw: list[BaseException | object] = []

    def caller() -> None:
        try:
            caller_saw.append(worker.call("keep-alive", slow.read))
        except Stopped as exc:
            caller_saw.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    slow.started.wait(5)
    time.sleep(0.5)
    assert thread.is_alive()  # still waiting: no budget
    stopped_at = time.monotonic()
    stopping.set()
    thread.join(5)
    assert time.monotonic() - stopped_at < 2
    [outcome] = caller_saw
    assert isinstance(outcome, Stopped)
    assert str(outcome) == "keep-alive: given up, the agent is stopping"

    ran: list[str] = []
    with pytest.raises(Stopped):  # queued behind the call in flight: given up, never run
        worker.call("another", lambda: ran.append("another"))
    slow.release.set()
    worker.close()
    [thread] = _threads("test-stop")
    thread.join(5)  # the queue is done: the call given up was skipped
    assert ran == []


def test_a_closed_worker_refuses_at_once() -> None:
    """After close(), a call fails at once naming the worker."""
    worker = Worker("test-closed", budget_s=5.0)
    worker.close()
    with pytest.raises(Stopped, match=r"^nvmlInit: the test-closed worker is shut down$"):
        worker.call("nvmlInit", lambda: None)
