"""read_kept: kernel files read every sample stay open and are re-read from offset 0."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent.collect.base import read_kept, read_small
from agent.errors import NoData


def _utime(text: str) -> int:
    return int(text.rsplit(")", 1)[1].split()[11])


def test_a_kept_file_shows_the_kernels_current_text() -> None:
    """The second read of /proc/self/stat sees CPU time spent since the first (no stale text)."""
    path = Path(f"/proc/{os.getpid()}/stat")
    first = _utime(read_kept(path))
    busy_until = time.process_time() + 0.1
    while time.process_time() < busy_until:
        pass
    assert _utime(read_kept(path)) > first
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
