"""The writer of a run's archive: an open ``<key>.partial`` directory, zipped at the end.

Durability, in order of the failures it survives:

* every append is one ``write()`` per file, straight to the file descriptor
  (no Python buffer), so a ``kill -9`` loses nothing already appended; a
  write that fails half-way (disk full) is cut back, so no torn line stays
  in the middle of a file;
* ``checkpoint()`` rewrites experiment.json atomically (temp, fsync, rename)
  with the current stop time and fsyncs the line files: a power cut loses at
  most the time since the last checkpoint;
* ``finalize()`` zips it (see ``agent.archive.finalize``), and after a crash
  ``finalize_partial()`` recovers every complete line.

Files are created 0600, directories 0700. The writing process holds an
``flock`` on ``.lock`` for as long as it writes; recovery skips a locked
directory, so it never zips a run that is still going.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.archive.files import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    cut_torn_tail,
    fsync_dir,
    last_line,
    lock,
    make_private_dir,
    write_all,
    write_private,
)
from agent.archive.finalize import Finalized, zip_partial
from agent.archive.format import AGENT_LINES, EXPERIMENT, MESSAGES, check_experiment, dump_line


class PartialArchive:
    """One open archive directory: lines appended as they come, zipped by ``finalize()``.

    Not thread-safe on its own: the offline sink serialises calls.
    """

    def __init__(self, path: Path, experiment: Mapping[str, object]) -> None:
        make_private_dir(path.parent)
        resumed = path.is_dir()
        path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        self.path = path
        self._lock_fd = lock(path)
        self.experiment = dict(experiment)
        self.last_id = 0
        self._unsynced = False  # lines appended since the last fsync
        if resumed:
            self._resume()
        self._fds = {
            name: os.open(path / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
            for name in (MESSAGES, AGENT_LINES)
        }
        write_private(path / EXPERIMENT, json.dumps(self.experiment).encode())
        fsync_dir(path.parent)

    def _resume(self) -> None:
        """Continue a directory a previous process of this run left: same start, next ids."""
        with contextlib.suppress(OSError, ValueError):
            old = json.loads((self.path / EXPERIMENT).read_bytes())
            start = self.experiment.get("start_time")
            if isinstance(old, dict) and not check_experiment(old) and isinstance(start, int):
                self.experiment["start_time"] = min(old["start_time"], start)
        for name in (MESSAGES, AGENT_LINES):
            cut_torn_tail(self.path / name)
        last = last_line(self.path / MESSAGES)
        if last is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.last_id = int(json.loads(last)["payload"]["message_id"])

    def append(
        self, lines: Sequence[Mapping[str, object]], agent: Sequence[Mapping[str, object]]
    ) -> None:
        """Append messages.json lines (ids already set) and agent lines, or neither.

        Raises OSError; whatever part of this call was written is cut back first.
        """
        data = {
            MESSAGES: b"".join(dump_line(line) for line in lines),
            AGENT_LINES: b"".join(dump_line(entry) for entry in agent),
        }
        ends = {name: os.lseek(fd, 0, os.SEEK_END) for name, fd in self._fds.items()}
        try:
            for name, blob in data.items():
                if blob:
                    write_all(self._fds[name], blob)
        except OSError:
            for name, end in ends.items():
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fds[name], end)
            raise
        self.last_id += len(lines)
        self._unsynced = True

    def add_file(self, name: str, data: bytes) -> None:
        """Store a file a ``file_upload`` line will name (its base name, in the archive root)."""
        write_private(self.path / name, data)

    def checkpoint(self, **changes: object) -> None:
        """Rewrite experiment.json with `changes` (e.g. stop_time) and fsync the line files."""
        self.experiment.update(changes)
        if self._unsynced:  # an idle run's checkpoint costs one small rewrite, no line fsyncs
            for fd in self._fds.values():
                os.fsync(fd)
            self._unsynced = False
        write_private(self.path / EXPERIMENT, json.dumps(self.experiment).encode())

    def finalize(self) -> Finalized:
        """Close the files, zip the directory next to it, remove the directory."""
        self.checkpoint()
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        try:
            return zip_partial(self.path, verify=False)
        finally:
            os.close(self._lock_fd)

    def abandon(self) -> None:
        """Close the files and release the lock, leaving the directory for recovery."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        os.close(self._lock_fd)
