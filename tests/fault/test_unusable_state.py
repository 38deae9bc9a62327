"""Monitoring trouble never blocks training: `run` starts the command and returns its status.

An unusable state directory, a disk full everywhere, an unusable or held offline directory, an
archive that cannot be zipped at the end: each gets one warning, and the command's exit status
is `run`'s. Offline runs (no API key): the archive is what would be lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from agent.archive.format import LOCK, PARTIAL_SUFFIX
from tests.fault.tmpfs import small_tmpfs
from tests.helpers import agent_argv, clean_env

pytestmark = pytest.mark.timeout(300)
KEY = "0123456789abcdef0123456789abcdef"


def _run(
    command: str, env: Mapping[str, str], *, fsize: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [*agent_argv(), "run", "--", "sh", "-c", command],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=limit,  # the test process runs no threads of its own
    )


@pytest.fixture(name="offline")
def _offline(tmp_path: Path) -> dict[str, str]:
    """No API key (offline), state and offline directories of their own, tmp inside tmp_path."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    return clean_env(
        tmp_path / "home",
        {
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
            "COMET_OFFLINE_DIRECTORY": str(tmp_path / "off"),
            "COMET_AUTO_LOG_GIT_METADATA": "false",
            "TMPDIR": str(scratch),
        },
    )


def _zips(root: Path) -> list[Path]:
    return sorted(root.rglob("*.zip"))


def test_state_directory_that_cannot_be_created(offline: dict[str, str], tmp_path: Path) -> None:
    """The state directory under a file: a scratch one instead, one warning, the command's 7."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    env = {**offline, "COMET_AGENT_STATE_DIRECTORY": str(blocker / "state")}
    result = _run("echo trained; exit 7", env)
    assert result.returncode == 7, result.stderr
    assert "trained" in result.stdout
    assert result.stderr.count("agent.state_fallback") == 1, result.stderr
    assert _zips(tmp_path / "off"), result.stderr  # still recorded


def test_disk_full_everywhere_runs_the_command_unmonitored(offline: dict[str, str]) -> None:
    """No file can grow past 4 KiB (a full disk): the command still runs, its status, one line."""
    result = _run("echo trained; exit 5", offline, fsize=4096)
    assert result.returncode == 5, result.stderr
    assert "trained" in result.stdout
    assert result.stderr.count("runs unmonitored") == 1, result.stderr


def test_offline_directory_unusable(offline: dict[str, str], tmp_path: Path) -> None:
    """The offline directory under a file: the archive goes to the state directory instead."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    env = {**offline, "COMET_OFFLINE_DIRECTORY": str(blocker / "off")}
    result = _run("exit 0", env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("offline.fallback") == 1, result.stderr
    assert _zips(tmp_path / "state"), result.stderr


def test_offline_key_held_by_another_agent(offline: dict[str, str], tmp_path: Path) -> None:
    """Another process holds <key>.partial: the archive is written elsewhere, the command runs."""
    partial = tmp_path / "off" / f"{KEY}{PARTIAL_SUFFIX}"
    partial.mkdir(parents=True)
    fd = os.open(partial / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = _run("exit 0", {**offline, "COMET_EXPERIMENT_KEY": KEY})
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("offline.fallback") == 1, result.stderr
    assert _zips(tmp_path / "state"), result.stderr


def test_unzippable_archive_keeps_exit_0(offline: dict[str, str], tmp_path: Path) -> None:
    """No file of the agent may grow any more when it zips: exit 0 stays 0, the partial stays."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    off = tmp_path / "off"
    # The command caps its parent's (the agent's) file sizes once the agent, which opens
    # beside the command, has its archive: the zip at the end cannot be written.
    result = _run(
        f"for i in $(seq 200); do ls {off}/*{PARTIAL_SUFFIX} >/dev/null 2>&1 && break; "
        "sleep 0.05; done; echo trained; prlimit --pid $PPID --fsize=1; exit 0",
        offline,
    )
    assert result.returncode == 0, result.stderr
    assert "offline.unfinished" in result.stderr
    assert list(off.glob(f"*{PARTIAL_SUFFIX}")), "the partial archive is kept for upload"


@pytest.fixture(name="small_disk")
def _small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (a real full disk: ENOSPC); skipped where mounting is not allowed."""
    with small_tmpfs(tmp_path / "small", "256k") as mount:
        yield mount


def _fill(path: Path) -> None:
    fd = os.open(path / "fill", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def test_offline_directory_full_at_start(offline: dict[str, str], small_disk: Path) -> None:
    """A full offline disk: the archive goes to the state directory; nothing left behind."""
    _fill(small_disk)
    env = {**offline, "COMET_OFFLINE_DIRECTORY": str(small_disk)}
    result = _run("echo trained; exit 0", env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("offline.fallback") == 1, result.stderr
    assert _zips(Path(offline["COMET_AGENT_STATE_DIRECTORY"])), result.stderr
    assert not list(small_disk.glob(f"*{PARTIAL_SUFFIX}"))  # no empty partial for upload


def test_offline_directory_fills_during_the_run(offline: dict[str, str], small_disk: Path) -> None:
    """The disk fills mid-run: the command's 0, the loss counted, the archive left to upload."""
    env = {**offline, "COMET_OFFLINE_DIRECTORY": str(small_disk), "DISK": str(small_disk)}
    fill = 'sleep 1; dd if=/dev/zero of="$DISK/fill" bs=4k 2>/dev/null; seq 3000; sleep 1'
    result = _run(f"{fill}; exit 0", env)
    assert result.returncode == 0, result.stderr
    assert "outbox.unwritten" in result.stderr  # the bounded loss report
    assert "offline.unfinished" in result.stderr
    assert list(small_disk.glob(f"*{PARTIAL_SUFFIX}"))


def _read_only(mount: Path) -> None:
    done = subprocess.run(
        [shutil.which("mount") or "mount", "-o", "remount,ro", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {done.stderr.strip()[:200]}")


@pytest.mark.parametrize("which", ["state", "offline"])
def test_read_only_file_system(offline: dict[str, str], small_disk: Path, which: str) -> None:
    """The state or the offline directory on a read-only file system: one warning, exit 4."""
    _read_only(small_disk)
    name = "COMET_AGENT_STATE_DIRECTORY" if which == "state" else "COMET_OFFLINE_DIRECTORY"
    result = _run("echo trained; exit 4", {**offline, name: str(small_disk / which)})
    assert result.returncode == 4, result.stderr
    event = "agent.state_fallback" if which == "state" else "offline.fallback"
    assert result.stderr.count(event) == 1, result.stderr
    assert "Read-only file system" in result.stderr
