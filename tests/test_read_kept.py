"""read_kept: kernel files read every sample stay open and are re-read from offset 0."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from agent.collect.base import read_kept, read_small
from agent.errors import NoData


def _cpu_ticks(text: str) -> int:
    fields = text.rsplit(")", 1)[1].split()
    # utime + stime: the kernel's split of a thread's time between the two is sampled
    return int(fields[11]) + int(fields[12])


def test_a_kept_file_shows_the_kernels_current_text() -> None:
    """A second read of this thread's stat file sees CPU time spent since the first."""
    # This thread's own file and clock: the process's counts include other threads, so a
    # busy loop timed by process_time could spin less than a tick on this thread.
    path = Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/stat")
    first = _cpu_ticks(read_kept(path))
    busy_until = time.thread_time() + 0.3
    while time.thread_time() < busy_until:
        pass
    assert _cpu_ticks(read_kept(path)) > first
    assert read_kept(path).split()[:3] == read_small(path).split()[:3]


def test_reads_open_no_new_descriptors() -> None:
    """After the first read, a hundred more leave the process's open files as they were."""
    read_kept(Path("/proc/loadavg"))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(100):
        read_kept(Path("/proc/loadavg"))
    assert len(os.listdir("/proc/self/fd")) == before


def test_fixture_files_are_read_afresh(tmp_path: Path) -> None:
    """Outside /proc and /sys (fixture trees) a file replaced atomically reads its new text."""
    path = tmp_path / "loadavg"
    path.write_text("0.50 0.40 0.30 1/100 42\n")
    assert read_kept(path).startswith("0.50")
    (tmp_path / "new").write_text("1.50 0.40 0.30 1/100 42\n")
    (tmp_path / "new").replace(path)
    assert read_kept(path).startswith("1.50")


def test_a_missing_kernel_file_is_no_data() -> None:
    """A kernel file that does not exist is NoData, as with read_small."""
    with pytest.raises(NoData):
        read_kept(Path("/proc/no-such-file-here"))
