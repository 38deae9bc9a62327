"""The outbox's SQLite file: created private, opened in WAL mode, its errors made readable.

Everything here turns ``OSError`` and ``sqlite3.Error`` into ``OutboxError``
(or ``CorruptOutbox``) with one line that names the file and the fix; the
queue logic lives in ``agent.delivery.outbox``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import suppress
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

from agent.errors import OutboxError

READY, LEASED, DEAD = 0, 1, 2
WAL_PAGES = 256  # auto-checkpoint every 256 pages (1 MiB at 4 KiB)
WAL_LIMIT_BYTES = 1024 * 1024
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order, never reused
    endpoint TEXT NOT NULL,
    experiment_key TEXT NOT NULL,
    body BLOB NOT NULL,                    -- compact JSON, exactly as the collector stamped it
    attachment BLOB,
    created_ms INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,      -- 0 ready, 1 leased, 2 dead letter
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (state, id);
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (state, not_before_ms);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class CorruptOutbox(OutboxError):
    """The outbox file is not a usable SQLite database; ``recover=True`` moves it aside."""


def connect(path: Path) -> sqlite3.Connection:
    """Create (0700 directory, 0600 file) or open the outbox and release stale leases."""
    directory = path.parent
    try:
        if not directory.is_dir():
            for missing in reversed([p for p in (directory, *directory.parents) if not p.exists()]):
                missing.mkdir(
                    mode=0o700
                )  # each parent too: mkdir -p would leave them 0777 & ~umask
            directory.chmod(0o700)  # mkdir's mode is filtered by the umask
        # Create the file ourselves so it is 0600 from the first byte; SQLite creates -wal
        # and -shm with the permissions of the database file.
        # O_NOFOLLOW and fchmod: a link at this name is refused (ELOOP), never followed.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutboxError(
            f"cannot create the outbox {path}: {exc.strerror or exc}; make {directory} "
            "writable by this user or set [agent] state_directory"
        ) from None
    # check_same_thread=False: one connection serves every thread, behind the Outbox's lock.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # The WAL, not the data, is what fills a nearly full disk: SQLite lets it grow to 1000
        # pages (4 MiB) before it checkpoints, and keeps its size after. Checkpoint at 1 MiB
        # and shrink it back to that (the Outbox also truncates it after sends).
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        # Damaged pages (a bad disk, a copy cut short) would fail a query at some later moment
        # and stop the agent there; found now, the file is salvaged and moved aside instead.
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"integrity check: {'; '.join(problems)[:200]}")
        conn.executescript(SCHEMA)
        # Leases of a process that died: those messages were never acked, so send them again.
        conn.execute("UPDATE messages SET state = ? WHERE state = ?", (READY, LEASED))
        # A new process knows of no outage: retry what was waiting at once, in order.
        conn.execute(
            "UPDATE messages SET not_before_ms = 0 WHERE state = ? AND not_before_ms > 0", (READY,)
        )
    except sqlite3.Error as exc:
        conn.close()
        fail(path, exc, "open")
    return conn


def fail(path: Path, exc: sqlite3.Error, action: str) -> NoReturn:
    """Raise the OutboxError (CorruptOutbox for a damaged file) that explains `exc`."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    text = str(exc)
    where = path.parent
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or text.startswith("integrity"):
        raise CorruptOutbox(
            f"outbox {path} is corrupt ({text}); the next start of comet-agent keeps what reads, "
            f"moves it aside as {path.name}.corrupt-<time> and starts a new one (or move it "
            "aside yourself)"
        ) from None
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        message = (
            f"cannot {action} the outbox {path} ({text}): the disk is full, a file-size limit "
            f"was hit or the disk is failing; free space under {where} or lower [outbox] max_bytes"
        )
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        message = f"outbox {path} is locked; stop the other comet-agent that uses {where}"
    elif name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
        message = (
            f"cannot {action} the outbox {path} ({text}); make {where} and its files writable "
            "by this user or set [agent] state_directory"
        )
    else:
        message = f"outbox {path}: {action} failed ({text}); check the file and its filesystem"
    raise OutboxError(message) from None


COLUMNS = (
    "endpoint, experiment_key, body, attachment, created_ms, kind, state, attempts, last_error,"
    " size"
)


def salvage(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Read what still reads from a damaged outbox: (message rows, state rows), oldest first.

    Rows are read one by one, walking up from the first id and down from the last, so one
    damaged page loses the rows on it, not every row after it.
    """
    rows: dict[int, tuple[object, ...]] = {}
    state: list[tuple[object, ...]] = []
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error:
        return [], []
    try:
        with suppress(sqlite3.Error):
            state = conn.execute("SELECT key, value FROM state").fetchall()
        for order in ("ASC", "DESC"):
            with suppress(sqlite3.Error):
                cur = conn.execute(
                    f"SELECT id, {COLUMNS} FROM messages NOT INDEXED ORDER BY id {order}"  # noqa: S608
                )
                for row in cur:
                    rows[int(row[0])] = tuple(row[1:])
    finally:
        with suppress(sqlite3.Error):
            conn.close()
    return [rows[i] for i in sorted(rows)], state


def requeue_dead(path: Path) -> int:
    """Make the dead letters of the outbox at `path` ready again; return how many.

    A plain connection, not ``Outbox``: opening one releases the leases of a
    running agent, and this runs beside it (that agent then sends them).
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        try:
            cur = conn.execute(
                "UPDATE messages SET state = ?, attempts = 0, not_before_ms = 0 WHERE state = ?",
                (READY, DEAD),
            )
            return int(cur.rowcount)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        fail(path, exc, "write")


def count_dead(path: Path) -> int:
    """Return how many dead letters the outbox at `path` holds (read-only; 0 if unreadable)."""
    # A cleanly closed outbox has no -wal: read it immutable, which creates no -wal or -shm
    # (a look must leave the directory as it was); with a -wal, its -shm is there already.
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?{mode}", uri=True, timeout=2.0)
        try:
            row = conn.execute("SELECT COUNT(*) FROM messages WHERE state = ?", (DEAD,)).fetchone()
            return int(row[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def truncate_wal(conn: sqlite3.Connection, path: Path) -> bool:
    """Checkpoint and truncate the WAL to zero bytes; return whether it gave space back."""
    wal = path.with_name(path.name + "-wal")
    try:
        before = wal.stat().st_size
    except OSError:
        return False
    with suppress(sqlite3.Error):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    try:
        return wal.stat().st_size < before
    except OSError:
        return True


def rollback(conn: sqlite3.Connection) -> None:
    """Undo the open transaction, if SQLite has not already (it does on SQLITE_FULL, I/O)."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def move_aside(path: Path, at_ms: int) -> Path:
    """Rename a corrupt outbox (and its -wal, -shm) to ``<name>.corrupt-<time>``; return it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at_ms / 1000))
    try:
        # The -wal keeps its suffix after the new name, so SQLite still reads it with the file.
        for suffix in ("-wal", "-shm", ""):
            src = path.with_name(path.name + suffix)
            if src.exists():
                src.rename(path.with_name(f"{path.name}.corrupt-{stamp}{suffix}"))
    except OSError as exc:
        raise OutboxError(
            f"cannot move the corrupt outbox {path} aside: {exc.strerror or exc}; "
            "move or delete it by hand"
        ) from None
    return path.with_name(f"{path.name}.corrupt-{stamp}")
