"""The crash reason: the exception line of the last traceback, the exit, OOM."""

from __future__ import annotations

import subprocess
import sys

from agent.lifecycle.ending import ChildExit, StderrTail, crash_reason, end_messages, exception_line


def _stderr_of(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stderr


def test_exception_line_of_a_real_traceback() -> None:
    """Python's own traceback: the line naming the exception, not a frame."""
    text = _stderr_of("print('x')\nraise RuntimeError('boom at step 2')")
    assert exception_line(text) == "RuntimeError: boom at step 2"


def test_the_last_traceback_wins_and_chained_ones_name_the_final_exception() -> None:
    """A handled traceback printed earlier, then a chained one: the final exception."""
    text = _stderr_of(
        "import traceback\n"
        "try:\n    1/0\nexcept ZeroDivisionError:\n    traceback.print_exc()\n"
        "try:\n    {}['k']\n"
        "except KeyError as e:\n    raise ValueError('bad\\nsecond line') from e\n"
    )
    assert exception_line(text) == "ValueError: bad"


def test_no_traceback_no_exception_line() -> None:
    assert exception_line("loss 0.1\nKilled\n") is None
    assert exception_line("Traceback (most recent call last):\n  File x\n") is None


def test_crash_reason_is_as_specific_as_known() -> None:
    """Exception and exit code; a signal; OOM from the cgroup; a start error alone."""
    boom = ChildExit(1, None, 1.0, False, exception="RuntimeError: boom")
    assert crash_reason(boom) == "RuntimeError: boom (exit code 1)"
    oom = ChildExit(137, 9, 1.0, True)
    assert crash_reason(oom) == "killed by signal 9, out of memory"
    assert crash_reason(ChildExit(2, None, 1.0, None)) == "exit code 2"
    assert crash_reason(ChildExit(127, None, 0.0, None, "x: command not found")) == (
        "x: command not found"
    )
    messages = end_messages(
        "k" * 32,
        child=boom,
        leader=True,
        owned=True,
        started_ms=1,
        end_ms=2,
        throttled=False,
    )
    status = [m.body for m in messages if m.endpoint == "update-status"]
    assert status == [
        {"isAlive": False, "error": "RuntimeError: boom (exit code 1)", "hasCrashed": True}
    ]


def test_stderr_tail_keeps_the_end() -> None:
    """Bounded: megabytes of stderr keep the last window, where the traceback is."""
    tail = StderrTail(limit=1000)
    for _ in range(500):
        tail.feed(b"noise " * 100 + b"\n")
    tail.feed(b"Traceback (most recent call last):\n  File 'x'\nOSError: disk\n")
    assert len(tail.text()) <= 1000
    assert exception_line(tail.text()) == "OSError: disk"
