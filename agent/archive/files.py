"""File-system primitives of the archive writer: private files, atomic writes, the writer's lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

from agent.archive.format import LOCK
from agent.dirs import make_private, open_nofollow
from agent.errors import UsageError

CHUNK = 1 << 20
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class ArchiveBusy(UsageError):
    """The partial directory is locked by a process that is still writing it."""


def make_private_dir(path: Path) -> None:
    """Create `path` and any missing parents, each 0700; refuse one another user owns."""
    make_private(path, "offline directory", "COMET_OFFLINE_DIRECTORY or [comet] offline_directory")


def open_file(path: Path, mode: str) -> IO[bytes]:
    """Open a file of a partial archive, never through a symbolic link (ELOOP instead).

    An archive directory is another user's to plant links in when the agent
    runs as root over it; a link to /etc/shadow must not be zipped and uploaded.
    """
    flags = os.O_RDWR if "+" in mode else os.O_RDONLY
    return cast(IO[bytes], os.fdopen(open_nofollow(path, flags), mode))


def regular_files(path: Path) -> list[Path]:
    """The regular files of a directory, links left out."""
    return sorted(p for p in path.iterdir() if p.is_file() and not p.is_symlink())


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file, fsync, rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to the file descriptor (os.write may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock(path: Path) -> int:
    """Take the writer's lock of a partial directory, or raise ArchiveBusy."""
    fd = open_nofollow(path / LOCK, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ArchiveBusy(
            f"{path} is still being written by a running agent (pid {holder}); "
            "stop it first, or upload it once it has finished"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def raw_lines(src: Path) -> Iterator[tuple[bytes, bool]]:
    """Yield (line without its newline, whether it was complete) for each line of `src`."""
    if not src.exists():
        return
    carry = b""
    with open_file(src, "rb") as fh:
        while chunk := fh.read(CHUNK):
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            for part in parts:
                yield part, True
    if carry:
        yield carry, False


def cut_torn_tail(path: Path) -> None:
    """Cut a file back to its last complete line (what a kill mid-write may leave)."""
    if not path.exists():
        return
    with open_file(path, "r+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(CHUNK, pos)
            fh.seek(pos - step)
            block = fh.read(step)
            cut = block.rfind(b"\n")
            if cut != -1:
                if pos - step + cut + 1 != end:
                    fh.truncate(pos - step + cut + 1)
                return
            pos -= step
        fh.truncate(0)


def last_line(path: Path) -> bytes | None:
    """Return the last complete line of a file, or None when it has none."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, end - CHUNK))
        lines = fh.read().rstrip(b"\n").split(b"\n")
    return lines[-1] if lines else None
