"""The state directory: one agent at a time, private runs beside it, orphans adopted."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import AgentError
from agent.lifecycle.state import StateDir, read_status


def test_created_private_and_locked(tmp_path: Path) -> None:
    """The directory is created 0700; a second holder is refused with the owner's pid."""
    path = tmp_path / "state"
    held = StateDir.acquire(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pathlib import Path; from agent.lifecycle.state import StateDir; "
            f"StateDir.acquire(Path({str(path)!r}))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert child.returncode != 0
    assert f"another comet-agent (pid {os.getpid()}) is using the state directory" in child.stderr
    held.release()
    StateDir.acquire(path).release()


def test_private_fallback_for_runs(tmp_path: Path) -> None:
    """`run` beside a running agent gets runs/<pid>, removed when it ends empty."""
    path = tmp_path / "state"
    main = StateDir.acquire(path)
    code = (
        "from pathlib import Path; from agent.lifecycle.state import StateDir; "
        f"s = StateDir.acquire(Path({str(path)!r}), private_fallback=True); print(s.path); "
        "s.release()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    assert out.startswith(str(path / "runs"))
    assert not Path(out).exists()
    main.release()


def test_orphans_are_yielded_only_when_unheld(tmp_path: Path) -> None:
    """An ended run's outbox is handed over; a live run's is left alone."""
    path = tmp_path / "state"
    main = StateDir.acquire(path)
    ended = path / "runs" / "999999"
    ended.mkdir(parents=True)
    (ended / "outbox.sqlite3").write_bytes(b"")
    live = StateDir.acquire(path, private_fallback=True)
    (live.path / "outbox.sqlite3").write_bytes(b"")
    found = list(main.orphans())
    assert found == [ended / "outbox.sqlite3"]
    assert not ended.exists()
    assert live.path.exists()
    live.release()
    main.release()


def test_status_snapshot_round_trip(tmp_path: Path) -> None:
    """The snapshot is written 0600 and read back; a broken one reads as None."""
    held = StateDir.acquire(tmp_path)
    held.write_status({"pid": 1, "experiment_key": "k"})
    assert read_status(tmp_path) == {"pid": 1, "experiment_key": "k"}
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o600
    (tmp_path / "status.json").write_text("{broken")
    assert read_status(tmp_path) is None
    held.release()


def test_unwritable_parent_is_a_clear_error(tmp_path: Path) -> None:
    """A state directory that cannot be created names the path and the setting to change."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AgentError, match=r"cannot create the state directory .*--state-dir"):
        StateDir.acquire(blocker / "state")
