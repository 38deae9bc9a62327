"""How a run ends: the wrapped command's exit, and the FACT messages that close the experiment."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from agent.api import bodies
from agent.message import Kind, Message


@dataclass(frozen=True)
class ChildExit:
    """How a wrapped command ended: the one record, from the spawn (``agent.wrap.process``)
    to the messages that end the run."""

    exit_code: int  # its own status, 128+N if signal N killed it, 126/127 if it could not start
    signal: int | None  # the signal that killed it
    wall_s: float
    oom_killed: bool | None  # None: no OOM counter to compare
    error: str | None = None  # the one-line reason it could not start
    exception: str | None = None  # the last line of its last traceback, e.g. "ValueError: x"
    started: bool = True
    oom_kills: int | None = None  # OOM kills in the cgroup during the run, any process

    @property
    def crashed(self) -> bool:
        """Anything but a clean exit 0."""
        return self.exit_code != 0


TAIL_BYTES = 64 * 1024
_TRACEBACK = "Traceback (most recent call last):"


class StderrTail:
    """The last `TAIL_BYTES` of the command's stderr: where its last traceback is."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        """Keep `chunk`, forgetting what falls out of the window."""
        with self._lock:
            self._buf += chunk
            if len(self._buf) > 2 * self._limit:
                del self._buf[: len(self._buf) - self._limit]

    def text(self) -> str:
        """The window as text (undecodable bytes replaced)."""
        with self._lock:
            return bytes(self._buf[-self._limit :]).decode("utf-8", "replace")


def exception_line(text: str) -> str | None:
    """The exception line of the last Python traceback in `text` ("RuntimeError: boom"), or None.

    After the traceback header come indented frame lines; the first line that is not indented
    names the exception (its first line only, cut to 500 characters).
    """
    at = text.rfind(_TRACEBACK)
    if at < 0:
        return None
    for line in text[at + len(_TRACEBACK) :].splitlines():
        if line.strip() and not line[0].isspace():
            return line.strip()[:500]
    return None


def crash_reason(child: ChildExit) -> str:
    """What ended the command, as specific as known: the exception, then the exit or signal."""
    how = f"killed by signal {child.signal}" if child.signal else f"exit code {child.exit_code}"
    if child.oom_killed:
        how += ", out of memory"
    if child.error:
        return child.error
    if child.exception:
        return f"{child.exception} ({how})"
    return how


def end_messages(
    experiment_key: str,
    *,
    child: ChildExit | None,
    leader: bool,
    owned: bool,
    started_ms: int,
    end_ms: int,
    throttled: bool,
) -> list[Message]:
    """The FACT messages that end a run: how the command ended, a crash, the end time, and
    mark-not-throttled after a throttled run (wire §3.10, §4.2)."""

    def msg(endpoint: str, body: Mapping[str, object]) -> Message:
        return Message(endpoint, experiment_key, body, end_ms, Kind.FACT)

    out: list[Message] = []
    if child is not None:
        facts = {
            "exit_code": child.exit_code,
            "signal": child.signal,
            "oom_killed": child.oom_killed,
            "wall_s": round(child.wall_s, 3),
        }
        for name, value in facts.items():
            if value is not None:
                out.append(msg("log-other", bodies.log_other(f"comet_agent.{name}", value, end_ms)))
        if child.crashed and leader:
            reason = crash_reason(child)
            out.append(
                msg("update-status", bodies.update_status(alive=False, error=reason, crashed=True))
            )
    if owned and leader:
        out.append(msg("set-start-end-time", bodies.start_end_time(started_ms, end_ms)))
    if throttled:
        out.append(msg("mark-not-throttled", {}))
    return out
