"""Fuzzing the outbox: random put/lease/ack/retry/release/reject sequences on a real SQLite file.

A Hypothesis state machine drives one Outbox (sometimes with a size cap small
enough to drop samples) alongside a plain model of what each row should be,
and reopens the file now and then as a restarted agent would. After every
step:

- every message put is exactly one of ready, leased, dead, acked, or dropped
  by the size cap, and the file holds exactly the ready, leased and dead ones;
- ``stats()`` counts (ready, leased, dead, bytes, oldest, drops per kind)
  match the model, and the byte total is never negative;
- only SAMPLE and OUTPUT rows are ever dropped, never a leased one, and every
  drop is counted (nothing disappears silently);
- each lease returns exactly the rows the contract names: the oldest ready
  rows whose time has come, skipping excluded endpoints and every endpoint
  whose older or newer row waits for a retry (FIFO per endpoint), bodies intact.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from agent.delivery.outbox import Outbox, row_size
from agent.delivery.outbox_db import DEAD, LEASED, READY
from agent.message import Kind, Message
from tests.fuzzing import fuzz

KEY = "0123456789abcdef0123456789abcdef"
ENDPOINTS = ("log-metric-batch", "log-output", "log-other", "set-start-end-time")
STATE_CODES = {"ready": READY, "leased": LEASED, "dead": DEAD}


@dataclass
class Row:
    """What the model knows of one message put."""

    message: Message
    size: int
    state: str = "ready"  # ready | leased | dead | acked | dropped
    not_before_ms: int = 0
    attempts: int = 0


class Clock:
    """A settable millisecond clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


class OutboxMachine(RuleBasedStateMachine):
    """One Outbox and its model, driven by random operations."""

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.path = Path(self._dir.name) / "state" / "outbox.db"
        self.clock = Clock()
        self.rows: dict[int, Row] = {}
        self.serial = 0
        self.cap = 1 << 30
        self.box: Outbox

    @initialize(small_cap=st.booleans())
    def open(self, small_cap: bool) -> None:
        """Open the outbox: unbounded, or with a cap of about a dozen rows."""
        self.cap = 3_000 if small_cap else 1 << 30
        self.box = Outbox(self.path, max_bytes=self.cap, clock=self.clock)

    def teardown(self) -> None:
        """Close the file and remove the directory."""
        if hasattr(self, "box"):
            self.box.close()
        self._dir.cleanup()

    # -- the model's views ----------------------------------------------------------------------

    def present(self) -> dict[int, Row]:
        """Rows the file should hold."""
        return {i: r for i, r in self.rows.items() if r.state in STATE_CODES}

    def ids_in(self, state: str) -> list[int]:
        """Ids of rows in `state`, oldest first."""
        return sorted(i for i, r in self.rows.items() if r.state == state)

    def expected_drops(self, added: int) -> list[int]:
        """The ids the size cap must drop to make room for `added` bytes (the documented policy)."""
        held = sum(r.size for r in self.present().values())
        over = held + added - self.cap
        if over <= 0:
            return []
        victims: list[int] = []
        freed = 0
        for kind in (Kind.SAMPLE, Kind.OUTPUT):
            if freed >= over:
                break
            for i, row in sorted(self.present().items()):
                if row.message.kind == kind and row.state != "leased":
                    victims.append(i)
                    freed += row.size
                    if freed >= over:
                        break
        return victims

    # -- operations -----------------------------------------------------------------------------

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(ENDPOINTS),
                st.sampled_from(list(Kind)),
                st.integers(0, 400),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def put(self, batch: list[tuple[str, Kind, int]]) -> None:
        """Put one to three messages in one transaction."""
        messages = []
        for endpoint, kind, pad in batch:
            self.serial += 1
            body = {"n": self.serial, "pad": "x" * pad, "text": "é\n\x00"}
            messages.append(Message(endpoint, KEY, body, self.clock.now, kind))
        sizes = [row_size(m) for m in messages]
        dropped = self.expected_drops(sum(sizes))
        ids = self.box.put_many(messages)
        assert len(ids) == len(messages) and ids == sorted(ids)
        assert not set(ids) & set(self.rows), "an id was reused"
        for i in dropped:
            self.rows[i].state = "dropped"
        for i, message, size in zip(ids, messages, sizes, strict=True):
            self.rows[i] = Row(message, size)

    @rule(
        limit=st.integers(0, 6),
        exclude=st.sets(st.sampled_from(ENDPOINTS), max_size=2),
    )
    def lease(self, limit: int, exclude: set[str]) -> None:
        """Lease: exactly the rows the contract names, in order, bodies intact."""
        now = self.clock.now
        ready = {i: r for i, r in self.rows.items() if r.state == "ready"}
        waiting = {r.message.endpoint for r in ready.values() if r.not_before_ms > now}
        eligible = [
            i
            for i, r in sorted(ready.items())
            if r.not_before_ms <= now
            and r.message.endpoint not in waiting
            and r.message.endpoint not in exclude
        ]
        got = self.box.lease(limit, exclude=exclude)
        assert [s.id for s in got] == eligible[:limit]
        for stored in got:
            row = self.rows[stored.id]
            assert stored.message == row.message
            assert stored.attempts == row.attempts
            row.state = "leased"

    @precondition(lambda self: bool(self.ids_in("leased")))
    @rule(data=st.data(), op=st.sampled_from(["ack", "retry_later", "release", "reject"]))
    def settle(self, data: st.DataObject, op: str) -> None:
        """Ack, retry later, release or reject some of the leased rows."""
        chosen = data.draw(
            st.lists(st.sampled_from(self.ids_in("leased")), min_size=1, unique=True),
            label="ids",
        )
        if op == "ack":
            self.box.ack(chosen)
            for i in chosen:
                self.rows[i].state = "acked"
        elif op == "retry_later":
            delay = data.draw(st.integers(0, 120_000), label="delay_ms")
            self.box.retry_later(chosen, self.clock.now + delay, "HTTP 503")
            for i in chosen:
                row = self.rows[i]
                row.state, row.not_before_ms, row.attempts = (
                    "ready",
                    self.clock.now + delay,
                    row.attempts + 1,
                )
        elif op == "release":
            self.box.release(chosen)
            for i in chosen:
                self.rows[i].state = "ready"
        else:
            self.box.reject(chosen, "HTTP 400")
            for i in chosen:
                self.rows[i].state = "dead"
                self.rows[i].attempts += 1

    @rule(ms=st.integers(1, 90_000))
    def advance(self, ms: int) -> None:
        """Time passes."""
        self.clock.now += ms

    @rule()
    def reopen(self) -> None:
        """A restart: leases go back to ready and nothing waits for a retry any more."""
        self.box.close()
        self.box = Outbox(self.path, max_bytes=self.cap, clock=self.clock)
        for row in self.rows.values():
            if row.state == "leased":
                row.state = "ready"
            if row.state == "ready":
                row.not_before_ms = 0

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def file_matches_the_model(self) -> None:
        """The file holds exactly the ready, leased and dead rows, each in its state."""
        if not hasattr(self, "box"):
            return
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
        try:
            actual = dict(conn.execute("SELECT id, state FROM messages").fetchall())
        finally:
            conn.close()
        expected = {i: STATE_CODES[r.state] for i, r in self.present().items()}
        assert actual == expected

    @invariant()
    def stats_match_the_model(self) -> None:
        """Counts, bytes, the oldest waiting message and the drops, as the model has them."""
        if not hasattr(self, "box"):
            return
        stats = self.box.stats()
        present = self.present()
        assert (stats.ready, stats.leased, stats.dead) == tuple(
            len(self.ids_in(s)) for s in ("ready", "leased", "dead")
        )
        assert stats.bytes == sum(r.size for r in present.values()) >= 0
        waiting = [r.message.created_ms for r in present.values() if r.state != "dead"]
        assert stats.oldest_created_ms == (min(waiting) if waiting else None)
        dropped = [r.message.kind for r in self.rows.values() if r.state == "dropped"]
        assert Kind.FACT not in dropped
        by_kind = {
            k.name.lower(): dropped.count(k) for k in (Kind.SAMPLE, Kind.OUTPUT) if k in dropped
        }
        assert stats.dropped_by_kind == by_kind
        assert stats.dropped_total == len(dropped)

    @invariant()
    def next_ready_matches_the_model(self) -> None:
        """next_ready_ms: the earliest moment some endpoint's waiting rows are all due."""
        if not hasattr(self, "box"):
            return
        latest: dict[str, int] = {}
        for row in self.rows.values():
            if row.state == "ready":
                endpoint = row.message.endpoint
                latest[endpoint] = max(latest.get(endpoint, 0), row.not_before_ms)
        assert self.box.next_ready_ms() == (min(latest.values()) if latest else None)


OutboxMachine.TestCase.settings = fuzz(60, stateful_step_count=30)
TestOutboxMachine = OutboxMachine.TestCase
