"""Outbox: the durable FIFO of messages between the collectors and the sender, in SQLite.

Model: persist-queue's ``SQLiteAckQueue``. A row is *ready*, then *leased* by
the sender, then acked (deleted), put back (``retry_later``, ``release``) or
*dead* (``reject``: kept and counted, never leased again). Leases left by a
crash return to ready when the file is opened, so delivery is at least once.

Durability: WAL mode with ``synchronous=NORMAL``. A commit has reached the
WAL file through ``write()`` before ``put`` returns, so it survives the
process being killed (even ``kill -9``); only an OS crash or power cut can
lose the last few commits, which is the price of not calling fsync per put.

Threads: one connection, shared by the scheduler's threads and the sender and
guarded by one lock. SQLite allows one writer at a time anyway, so a
connection per thread would only trade our lock for SQLite's busy-waiting;
every call holds the lock for one short transaction and never across I/O to
the network. One process owns an outbox file: opening it releases every
lease, and the byte total is kept in memory.

Size cap (``max_bytes``, counted as body + attachment + names + a fixed
overhead per row): when a put would pass it, the oldest SAMPLE rows are
dropped first, then the oldest OUTPUT rows; FACT rows never are. If only FACT
rows are left the put is accepted over the cap and logged. Leased rows are
not dropped (they are on their way out). Every drop is counted in the state
table (``stats().dropped_by_kind``) and logged as ``outbox.overflow``, at most
once a minute with the counts since the last line.

Failures raise ``OutboxError`` (one line: the path and the fix); nothing is
dropped silently. The caller of ``put``/``put_many`` must keep the messages
in memory and try again later when it raises. A file that is not a database,
or fails ``PRAGMA quick_check`` at open, raises ``CorruptOutbox``;
``Outbox(path, recover=True)`` (the daemon's choice) instead moves it aside as
``<name>.corrupt-<timestamp>``, copies every row that still reads into a new
file and says so in one line (``outbox.corrupt``). A row whose body cannot be
decoded becomes a dead letter when leased.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.delivery.outbox_db import (
    COLUMNS,
    DEAD,
    LEASED,
    READY,
    CorruptOutbox,
    connect,
    fail,
    move_aside,
    rollback,
    salvage,
    truncate_wal,
)
from agent.errors import OutboxError
from agent.log import RateLimiter, get_logger
from agent.message import Kind, Message, now_ms

log = get_logger(__name__)

ROW_OVERHEAD_BYTES = 64  # id, times, state, index entries: roughly what a row costs beyond its data
OVERFLOW_LOG_PERIOD_S = 60.0
TRUNCATE_EVERY_MS = 2000  # after sends, shrink the WAL at most this often
_DROPPED_KEY = "outbox.dropped."
_CHUNK = 500  # ids per IN (...): far below SQLite's variable limit on every version


@dataclass(frozen=True)
class Stored:
    """A message as the outbox holds it: its row id, tries so far and last error."""

    id: int
    message: Message
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class OutboxStats:
    """Counts and sizes for ``comet-agent status`` and the logs."""

    ready: int
    leased: int
    dead: int
    bytes: int
    oldest_created_ms: int | None
    dropped_total: int
    dropped_by_kind: dict[str, int] = field(default_factory=dict)


def row_size(msg: Message, body: bytes | None = None) -> int:
    """Return what `msg` (whose encoded body may be passed in) counts against the size cap."""
    body = msg.encoded_body() if body is None else body
    extra = len(msg.attachment) if msg.attachment else 0
    return len(body) + extra + len(msg.endpoint) + len(msg.experiment_key) + ROW_OVERHEAD_BYTES


class Outbox:
    """A durable FIFO of messages in one SQLite file; safe to share between threads."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], int] = now_ms,
        recover: bool = False,
    ) -> None:
        self.path = Path(path)
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._limiter = RateLimiter(OVERFLOW_LOG_PERIOD_S)
        self._unlogged: Counter[str] = Counter()
        self._truncated_ms = 0
        try:
            self._conn = connect(self.path)
            self._bytes = self._total_bytes()
        except CorruptOutbox as exc:
            if not recover:
                raise
            self._conn = self._recover(exc)
            self._bytes = self._total_bytes()

    # -- opening ---------------------------------------------------------------------------

    def _recover(self, exc: CorruptOutbox) -> sqlite3.Connection:
        """Move the damaged file aside, start a new one with every row that still reads."""
        with suppress(AttributeError, sqlite3.Error):
            self._conn.close()  # opened, then found damaged by a later read
        moved = move_aside(self.path, self._clock())
        rows, state = salvage(moved)
        conn = connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO messages ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                # A row leased by the dead process goes out again, as at every open.
                [(*row[:6], DEAD if row[6] == DEAD else READY, *row[7:]) for row in rows],
            )
            conn.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", state)
            conn.execute("COMMIT")
        except sqlite3.Error:
            rollback(conn)  # rows of the wrong shape: start empty rather than not at all
            rows = []
        # One line: what happened, what was kept, where the old file is for a look by hand.
        log.warning(
            "outbox.corrupt",
            path=str(self.path),
            moved_to=str(moved),
            salvaged=len(rows),
            error=str(exc),
        )
        return conn

    def _total_bytes(self) -> int:
        with self._tx() as conn:
            return int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM messages").fetchone()[0])

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """Hold the lock; run one transaction (IMMEDIATE when writing); translate errors."""
        with self._lock:
            conn = self._conn
            try:
                if write:
                    conn.execute("BEGIN IMMEDIATE")
                yield conn
                if write:
                    conn.execute("COMMIT")
            except sqlite3.ProgrammingError as exc:
                if "closed" not in str(exc):
                    raise
                raise OutboxError(f"outbox {self.path} was used after close(); a bug") from None
            except sqlite3.Error as exc:
                rollback(conn)
                fail(self.path, exc, "write" if write else "read")
            except BaseException:
                rollback(conn)
                raise

    # -- writing ---------------------------------------------------------------------------

    def put(self, msg: Message) -> int:
        """Store one message and return its id; raise OutboxError (keep `msg`) on failure."""
        return self.put_many([msg])[0]

    def put_many(self, msgs: Sequence[Message]) -> list[int]:
        """Store messages in one transaction and return their ids; all or none are stored."""
        rows = [(msg, body, row_size(msg, body)) for msg in msgs for body in (msg.encoded_body(),)]
        try:
            return self._put_rows(rows)
        except OutboxError:
            # A full disk may be the WAL's doing: give its space back and try once more.
            with self._lock:
                shrunk = truncate_wal(self._conn, self.path)
            if not shrunk:
                raise
            return self._put_rows(rows)

    def _put_rows(self, rows: list[tuple[Message, bytes, int]]) -> list[int]:
        added = sum(size for _, _, size in rows)
        ids: list[int] = []
        dropped: Counter[str] = Counter()
        freed = 0
        with self._tx(write=True) as conn:
            if self._bytes + added > self._max_bytes:
                freed = self._make_room(conn, self._bytes + added - self._max_bytes, dropped)
            for msg, body, size in rows:
                cur = conn.execute(
                    "INSERT INTO messages (endpoint, experiment_key, body, attachment,"
                    " created_ms, kind, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (msg.endpoint, msg.experiment_key, body, msg.attachment, msg.created_ms,
                     int(msg.kind), size),
                )  # fmt: skip
                ids.append(int(cur.lastrowid or 0))
        self._bytes += added - freed
        if dropped or self._bytes > self._max_bytes:
            self._unlogged.update(dropped)
            self._log_overflow()
        return ids

    def put_dead(self, dead: Sequence[Stored]) -> None:
        """Store dead letters taken from another outbox (an ended run's), tries and reason kept."""
        if not dead:
            return
        bodies = [s.message.encoded_body() for s in dead]
        sizes = [row_size(s.message, body) for s, body in zip(dead, bodies, strict=True)]
        rows = [
            (s.message.endpoint, s.message.experiment_key, body, s.message.attachment,
             s.message.created_ms, int(s.message.kind), DEAD, s.attempts, s.last_error, size)
            for s, body, size in zip(dead, bodies, sizes, strict=True)
        ]  # fmt: skip
        with self._tx(write=True) as conn:
            conn.executemany(
                f"INSERT INTO messages ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                rows,
            )
        self._bytes += sum(sizes)

    def _make_room(self, conn: sqlite3.Connection, over: int, dropped: Counter[str]) -> int:
        """Delete the oldest SAMPLE, then OUTPUT rows until `over` bytes are freed; return freed."""
        freed = 0
        for kind in (Kind.SAMPLE, Kind.OUTPUT):
            if freed >= over:
                break
            victims: list[int] = []
            for row_id, size in conn.execute(
                "SELECT id, size FROM messages WHERE kind = ? AND state != ? ORDER BY id",
                (int(kind), LEASED),
            ):
                victims.append(row_id)
                freed += size
                if freed >= over:
                    break
            if not victims:
                continue
            for part in _chunks(victims):
                conn.execute(f"DELETE FROM messages WHERE id IN ({_marks(part)})", part)  # noqa: S608
            name = kind.name.lower()
            dropped[name] += len(victims)
            conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                " SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)",
                (_DROPPED_KEY + name, str(len(victims))),
            )
        return freed

    def _log_overflow(self) -> None:
        repeats = self._limiter.check("overflow")
        if repeats is None:
            return
        counts = dict(self._unlogged)
        self._unlogged.clear()
        log.warning(
            "outbox.overflow",
            path=str(self.path),
            max_bytes=self._max_bytes,
            bytes=self._bytes,
            dropped_sample=counts.get("sample", 0),
            dropped_output=counts.get("output", 0),
            facts_over_cap=self._bytes > self._max_bytes,  # only FACT rows left: kept anyway
            repeats=repeats,
        )

    # -- the sender's side -----------------------------------------------------------------

    def lease(self, limit: int, *, exclude: Collection[str] = ()) -> list[Stored]:
        """Lease up to `limit` ready rows whose time has come, oldest first, skipping `exclude`."""
        now = self._clock()
        skip = list(exclude)
        sql = (
            "SELECT id, endpoint, experiment_key, body, attachment, created_ms, kind, attempts,"  # noqa: S608 (placeholders only)
            " last_error FROM messages WHERE state = ? AND not_before_ms <= ?"
            # FIFO per endpoint: while an older row of an endpoint waits for its retry, the
            # newer ones wait too, so nothing overtakes it (no reordering within an endpoint).
            " AND endpoint NOT IN (SELECT endpoint FROM messages WHERE state = ?"
            " AND not_before_ms > ?)"
            + (f" AND endpoint NOT IN ({_marks(skip)})" if skip else "")
            + " ORDER BY id LIMIT ?"
        )
        leased: list[Stored] = []
        poison: list[tuple[int, str]] = []
        with self._tx(write=True) as conn:
            for row in conn.execute(sql, (READY, now, READY, now, *skip, limit)).fetchall():
                try:
                    leased.append(_stored(row))
                except (ValueError, TypeError) as exc:  # invalid UTF-8 or JSON: a damaged row
                    poison.append((row[0], f"undecodable row: {type(exc).__name__}: {exc}"[:300]))
            # A row that cannot be read is a dead letter (kept for a look), never a dead sender.
            conn.executemany(
                "UPDATE messages SET state = ?, last_error = ? WHERE id = ?",
                [(DEAD, error, row_id) for row_id, error in poison],
            )
            for part in _chunks([s.id for s in leased]):
                conn.execute(
                    f"UPDATE messages SET state = ? WHERE id IN ({_marks(part)})",  # noqa: S608
                    (LEASED, *part),
                )
        if poison:
            log.error(
                "outbox.undecodable", path=str(self.path), count=len(poison), error=poison[0][1]
            )
        return leased

    def ack(self, ids: Iterable[int]) -> None:
        """Delete delivered rows."""
        freed = 0
        with self._tx(write=True) as conn:
            for part in _chunks(list(ids)):
                cur = conn.execute(
                    f"DELETE FROM messages WHERE id IN ({_marks(part)}) RETURNING size",  # noqa: S608
                    part,
                )
                freed += sum(row[0] for row in cur.fetchall())
        self._bytes -= freed
        now = self._clock()
        if now - self._truncated_ms >= TRUNCATE_EVERY_MS:
            # Sent rows leave their pages in the WAL: keep it small on a nearly full disk.
            self._truncated_ms = now
            with self._lock:
                truncate_wal(self._conn, self.path)

    def retry_later(
        self, ids: Iterable[int], not_before_ms: int, error: str, *, count: bool = True
    ) -> None:
        """Put leased rows back, counting a failed try (unless not `count`); none is leased
        before `not_before_ms`."""
        self._update(
            ids,
            f"state = ?, attempts = attempts + {int(count)}, not_before_ms = ?, last_error = ?",
            (READY, not_before_ms, error),
        )

    def release(self, ids: Iterable[int]) -> None:
        """Put leased rows back as they were (shutdown, or never tried): no attempt counted."""
        self._update(ids, "state = ?", (READY,), only_leased=True)

    def reopen(self, *, exclude: Collection[str] = ()) -> None:
        """Make every waiting ready row (not of `exclude`) leasable now: the outage is over."""
        skip = list(exclude)
        sql = "UPDATE messages SET not_before_ms = 0 WHERE state = ? AND not_before_ms > 0" + (  # noqa: S608
            f" AND endpoint NOT IN ({_marks(skip)})" if skip else ""
        )
        with self._tx(write=True) as conn:
            conn.execute(sql, (READY, *skip))

    def reject(self, ids: Iterable[int], reason: str) -> None:
        """Make rows dead letters: kept and counted, never leased again."""
        self._update(ids, "state = ?, attempts = attempts + 1, last_error = ?", (DEAD, reason))

    def _update(
        self, ids: Iterable[int], assignments: str, values: tuple[object, ...], *,
        only_leased: bool = False,
    ) -> None:  # fmt: skip
        where = f" AND state = {LEASED}" if only_leased else ""
        with self._tx(write=True) as conn:
            for part in _chunks(list(ids)):
                conn.execute(
                    f"UPDATE messages SET {assignments} WHERE id IN ({_marks(part)}){where}",  # noqa: S608
                    (*values, *part),
                )

    def retry_dead(self) -> int:
        """Make every dead letter ready again, tries reset; return how many."""
        with self._tx(write=True) as conn:
            cur = conn.execute(
                "UPDATE messages SET state = ?, attempts = 0, not_before_ms = 0 WHERE state = ?",
                (READY, DEAD),
            )
            return int(cur.rowcount)

    # -- reading ---------------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[Stored]:
        """Return up to `limit` dead letters, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, endpoint, experiment_key, body, attachment, created_ms, kind,"
                " attempts, last_error FROM messages WHERE state = ? ORDER BY id LIMIT ?",
                (DEAD, limit),
            ).fetchall()
        return [_stored(row, lenient=True) for row in rows]

    def pending(self) -> int:
        """Return how many rows are waiting to be delivered (ready or leased)."""
        with self._tx() as conn:
            return int(
                conn.execute(
                    "SELECT COUNT(*) FROM messages WHERE state IN (?, ?)", (READY, LEASED)
                ).fetchone()[0]
            )

    def stats(self) -> OutboxStats:
        """Return the counts by state, the size, the oldest waiting message, and drops."""
        with self._tx() as conn:
            counts = dict(
                conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state").fetchall()
            )
            oldest = conn.execute(
                "SELECT MIN(created_ms) FROM messages WHERE state IN (?, ?)", (READY, LEASED)
            ).fetchone()[0]
            dropped = {
                key.removeprefix(_DROPPED_KEY): int(value)
                for key, value in conn.execute(
                    "SELECT key, value FROM state WHERE key LIKE ?", (_DROPPED_KEY + "%",)
                )
            }
        return OutboxStats(
            ready=counts.get(READY, 0),
            leased=counts.get(LEASED, 0),
            dead=counts.get(DEAD, 0),
            bytes=self._bytes,
            oldest_created_ms=oldest,
            dropped_total=sum(dropped.values()),
            dropped_by_kind=dropped,
        )

    def next_ready_ms(self, *, exclude: Collection[str] = ()) -> int | None:
        """Return when the next ready row (not of `exclude`) may be leased; None if none."""
        skip = list(exclude)
        # An endpoint's rows go in order, so it is free once its last waiting row's time has
        # come: the latest not_before per endpoint, and the earliest of those overall.
        sql = (
            "SELECT MIN(latest) FROM (SELECT MAX(not_before_ms) AS latest FROM messages"  # noqa: S608
            " WHERE state = ?"
            + (f" AND endpoint NOT IN ({_marks(skip)})" if skip else "")
            + " GROUP BY endpoint)"
        )
        with self._tx() as conn:
            value = conn.execute(sql, (READY, *skip)).fetchone()[0]
        return None if value is None else int(value)

    def get_state(self, key: str) -> str | None:
        """Return the value stored under `key`, or None."""
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        """Store `value` under `key` (experiment key, last keep-alive answer, upload progress)."""
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def close(self) -> None:
        """Close the file; later calls raise OutboxError."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _stored(row: tuple[Any, ...], *, lenient: bool = False) -> Stored:
    """Decode a row; `lenient` shows an undecodable body as {} (a dead letter to list)."""
    row_id, endpoint, key, body, attachment, created_ms, kind, attempts, last_error = row
    try:
        decoded = json.loads(body)
        if not isinstance(decoded, dict):
            raise TypeError(f"body is {type(decoded).__name__}, not an object")
        msg = Message(str(endpoint), str(key), decoded, int(created_ms), Kind(kind), attachment)
    except (ValueError, TypeError):
        if not lenient:
            raise
        msg = Message(str(endpoint), str(key), {}, int(created_ms or 0), Kind.SAMPLE, None)
    return Stored(row_id, msg, attempts, last_error)


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]
