"""run: the command's first output, held in order while the agent opens beside it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from agent.commands import run
from agent.message import Kind, Message


def _msg(n: int) -> Message:
    return Message("log-output", "k" * 32, {"n": n}, n, Kind.OUTPUT)


def test_held_output_goes_first_and_in_order() -> None:
    """What came before the agent opened reaches it first; what comes after follows, and a
    writer racing the hand-over never jumps ahead of the held messages."""
    got: list[int] = []

    def put(messages: Sequence[Message]) -> bool:
        got.extend(int(m.body["n"]) for m in messages)  # type: ignore[call-overload]
        return True

    held = run._UntilOpen()
    for n in range(100):
        held([_msg(n)])
    racer = threading.Thread(target=lambda: [held([_msg(n)]) for n in range(100, 200)])
    racer.start()
    held.open(put)
    racer.join()
    held([_msg(200)])
    assert got == list(range(201))
    assert held.dropped == 0


def test_held_output_is_bounded_and_dropped_when_no_agent_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past HELD_MAX the newest are dropped and counted; with no agent at all, everything held
    and everything after is dropped, counted, and nothing raises."""
    monkeypatch.setattr(run, "HELD_MAX", 5)
    monkeypatch.setattr(run, "HELD_WAIT_S", 0.05)
    held = run._UntilOpen()
    assert held([_msg(n) for n in range(8)]) is True
    assert held.dropped == 3
    held.close()
    assert held([_msg(9)]) is True
    assert held.dropped == 3 + 5 + 1


def test_a_writer_past_the_bound_waits_for_the_agent_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood before the agent opens: the writer waits (the command's output backs up, as
    behind a slow disk) and every message arrives once the agent opens, in order."""
    monkeypatch.setattr(run, "HELD_MAX", 5)
    got: list[int] = []
    held = run._UntilOpen()
    writer = threading.Thread(target=lambda: [held([_msg(n)]) for n in range(50)])
    writer.start()
    writer.join(0.3)
    assert writer.is_alive()  # waiting at the bound, not dropping

    def put(messages: Sequence[Message]) -> bool:
        got.extend(int(m.body["n"]) for m in messages)  # type: ignore[call-overload]
        return True

    held.open(put)
    writer.join(5)
    assert got == list(range(50)) and held.dropped == 0
