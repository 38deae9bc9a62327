"""The state directory: one agent at a time, the outbox file, the status snapshot.

Two agents on one outbox would hand each other's leased rows back to the
queue on restart and send them twice, so each state directory is held with
an ``flock`` by one agent. ``comet-agent run`` next to a running daemon (or a
second ``run``) takes a private ``runs/<pid>`` directory instead; whatever a
run could not deliver before it ended stays there, and the next agent that
holds the main directory adopts it (``orphans()``), so nothing is stranded.

The status snapshot (``status.json``) is a ``StatusSnapshot``
(``agent.lifecycle.snapshot``), written here and read back by ``read_status``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from agent.dirs import make_private, open_nofollow
from agent.errors import AgentError

if TYPE_CHECKING:  # loaded where read: its frozen dataclasses cost `run` ~9 ms before the spawn
    from agent.lifecycle.snapshot import StatusSnapshot

LOCK_NAME = "agent.lock"
OUTBOX_NAME = "outbox.sqlite3"
STATUS_NAME = "status.json"


class StateDir:
    """A state directory this process holds."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, path: Path, *, private_fallback: bool = False) -> StateDir:
        """Create (0700) and lock `path`; with `private_fallback` use runs/<pid> if it is held."""
        held = _try_lock(path)
        if held is not None:
            return cls(path, held)
        if not private_fallback:
            owner = _owner(path)
            raise AgentError(
                f"another comet-agent{owner} is using the state directory {path}; stop it, or "
                "give this one its own with --state-dir"
            )
        private = path / "runs" / str(os.getpid())
        held = _try_lock(private)
        if held is None:
            raise AgentError(f"cannot lock the private state directory {private}")
        return cls(private, held)

    @property
    def outbox_path(self) -> Path:
        """The SQLite outbox file."""
        return self.path / OUTBOX_NAME

    def write_status(self, snapshot: StatusSnapshot) -> None:
        """Replace the status snapshot atomically (0600)."""
        tmp = self.path / f".{STATUS_NAME}.{os.getpid()}.tmp"
        # Compact, in one write: an indented dump runs json's pure-Python encoder and writes
        # piece by piece, a visible share of an idle agent's CPU at its 10 s cadence.
        # default=str: a keep-alive answer is the server's JSON, kept as it came.
        text = json.dumps(snapshot.as_json(), default=str).encode()
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            try:
                view = memoryview(text)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, self.path / STATUS_NAME)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # gone after the replace; left only when the dump failed

    def orphans(self) -> Iterator[Path]:
        """Yield the outbox files of ended runs (runs/<pid> no one holds), locked for adoption."""
        runs = self.path / "runs"
        if not runs.is_dir():
            return
        for child in sorted(runs.iterdir()):
            if not child.is_dir():
                continue
            fd = _try_lock(child)
            if fd is None:
                continue  # a run still going
            try:
                if (child / OUTBOX_NAME).exists():
                    yield child / OUTBOX_NAME
            finally:
                os.close(fd)
            shutil.rmtree(child, ignore_errors=True)

    def release(self, *, drained: bool = False) -> None:
        """Drop the lock. A private ``runs/<pid>`` directory goes too when nothing is left in
        it, or only an outbox that `drained` says holds nothing (the main directory stays)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if self.path.parent.name == "runs":
            left = {p.name for p in self.path.iterdir()} - {LOCK_NAME, STATUS_NAME}
            if drained:
                left -= {OUTBOX_NAME, f"{OUTBOX_NAME}-wal", f"{OUTBOX_NAME}-shm"}
            if not left:
                shutil.rmtree(self.path, ignore_errors=True)


def read_status(path: Path) -> StatusSnapshot | None:
    """Return the status snapshot of the state directory `path`; None if absent or unreadable."""
    try:
        data = json.loads((path / STATUS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    from agent.lifecycle.snapshot import StatusSnapshot

    return StatusSnapshot.from_json(data)


def make_private_dir(path: Path) -> None:
    """Create `path` and its parents for this user only (0700), or raise naming the fix."""
    make_private(path, "state directory", "--state-dir or [agent] state_directory")


def _try_lock(path: Path) -> int | None:
    make_private_dir(path)
    lock = path / LOCK_NAME
    try:
        # Never through a link: a planted agent.lock -> /etc/passwd would be truncated below.
        fd = open_nofollow(lock, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise AgentError(
            f"cannot open {lock}: {exc.strerror}; check the directory's permissions"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _owner(path: Path) -> str:
    try:
        pid = (path / LOCK_NAME).read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


# Tolerant readers of one JSON value: the wrong type reads as "not recorded", never raises.
