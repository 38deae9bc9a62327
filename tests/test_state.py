"""The state directory: one agent at a time, private runs beside it, orphans adopted."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from agent.commands.top import screen
from agent.config import load_settings
from agent.delivery.outbox import OutboxStats
from agent.delivery.sender import SenderStatus
from agent.doctor.check import SKIP
from agent.doctor.local import agent_check
from agent.errors import AgentError
from agent.lifecycle.agent import Agent
from agent.lifecycle.keepalive import Intervals
from agent.lifecycle.multinode import Identity
from agent.lifecycle.snapshot import (
    Beat,
    CollectorState,
    OutboxCounts,
    SenderState,
    SnapshotIdentity,
    SnapshotIntervals,
    StatusSnapshot,
)
from agent.lifecycle.state import STATUS_NAME, StateDir, read_status
from tests.helpers import run_agent

# status.json as the agent has written it since the snapshot had these parts: the keys and
# layout that other tools read (and that an agent of this version must still write).
TODAYS_FILE = {
    "version": "0.9.0",
    "pid": 4242,
    "running": True,
    "started_ms": 1_700_000_000_000,
    "updated_ms": 1_700_000_060_000,
    "stopped_cleanly": False,
    "experiment_key": "a" * 32,
    "link": "https://www.comet.com/ws/proj/" + "a" * 32,
    "offline": False,
    "owned": True,
    "leader": True,
    "identity": {
        "hostname": "node7",
        "rank": 0,
        "local_rank": 0,
        "node": "3",
        "rank_source": "RANK",
        "context": "node3-rank0",
    },
    "intervals": {
        "beat_s": 3.0,
        "cpu_s": 60.0,
        "gpu_s": 30.0,
        "beat_source": "server",
        "cpu_source": "server-clamped",
        "gpu_source": "config",
    },
    "follow_server": True,
    "last_beat": {
        "at_ms": 1_700_000_059_000,
        "ok": True,
        "answer": {"isAliveBeatDurationMillis": 3000},
    },
    "outbox": {
        "ready": 12,
        "leased": 2,
        "dead": 1,
        "bytes": 40_960,
        "oldest_created_ms": 1_700_000_050_000,
        "dropped_total": 3,
        "dropped_by_kind": {"metric": 3},
    },
    "sender": {
        "last_success_ms": 1_700_000_059_500,
        "last_error": "HTTP 503 from add-cpu-metrics",
        "last_error_ms": 1_700_000_058_000,
        "paused_auth": False,
        "throttled": {"log-other": 1_700_000_070_000},
        "throttled_ever": True,
        "sent_total": 500,
        "requests_total": 120,
        "paused_url": False,
    },
    "pending_in_memory": 0,
    "collectors": {
        "cpu": {"failures": 0, "last_ok_ms": 1_700_000_059_900},
        "disk": {"failures": 2, "last_error": "/proc/diskstats: unexpected content ''"},
        "gpu": {"failures": 0},
    },
    "gpu": "on",
    "archive": None,
    "archive_hint": None,
}


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
    """The snapshot is written 0600 and read back equal, every part typed; a file that is
    not JSON, or not an object, reads as None."""
    snapshot = StatusSnapshot(
        version="1.2.3",
        pid=1,
        running=True,
        started_ms=1_000,
        updated_ms=2_000,
        experiment_key="k" * 32,
        owned=False,
        leader=True,
        identity=SnapshotIdentity("host", 1, 1, "0", "RANK", "node0-rank1"),
        intervals=SnapshotIntervals(10.0, 30.0, 30.0, "default", "config", "default"),
        last_beat=Beat(1_500, ok=False, error="keep-alive: HTTP 503"),
        outbox=OutboxCounts(ready=5, oldest_created_ms=900, dropped_by_kind={"metric": 2}),
        sender=SenderState(last_error="HTTP 503", throttled={"log-other": 3_000}),
        pending_in_memory=7,
        collectors={"cpu": CollectorState(2, "boom", 1_900), "load": CollectorState()},
        gpu="no NVIDIA driver",
        archive="/tmp/a.zip",
    )
    held = StateDir.acquire(tmp_path)
    held.write_status(snapshot)
    assert read_status(tmp_path) == snapshot
    assert stat.S_IMODE((tmp_path / STATUS_NAME).stat().st_mode) == 0o600
    for damage in ("{broken", "[1, 2]", '"a string"', "null", "[" * 100_000):
        (tmp_path / STATUS_NAME).write_text(damage)
        assert read_status(tmp_path) is None, damage
    held.release()


def test_todays_status_file_reads_typed_and_writes_back_unchanged(tmp_path: Path) -> None:
    """status.json keeps its keys and layout: today's file reads into the typed parts and an
    agent writes the same JSON back (collectors leave out what they have not earned)."""
    (tmp_path / STATUS_NAME).write_text(json.dumps(TODAYS_FILE))
    snapshot = read_status(tmp_path)
    assert snapshot is not None
    assert snapshot.outbox == OutboxCounts(12, 2, 1, 40_960, 1_700_000_050_000, 3, {"metric": 3})
    assert snapshot.sender is not None and snapshot.sender.throttled_ever
    assert snapshot.intervals.cpu_source == "server-clamped"
    assert snapshot.identity is not None and snapshot.identity.context == "node3-rank0"
    assert snapshot.last_beat == Beat(
        1_700_000_059_000, True, None, {"isAliveBeatDurationMillis": 3000}
    )
    assert snapshot.collectors["disk"].failures == 2
    assert snapshot.collectors["cpu"].last_error is None
    held = StateDir.acquire(tmp_path)
    held.write_status(snapshot)
    held.release()
    assert json.loads((tmp_path / STATUS_NAME).read_text()) == TODAYS_FILE


def test_the_parts_copy_every_field_of_what_they_show() -> None:
    """A field added to the outbox's stats, the sender's status, the intervals or the identity
    must be added to the snapshot too, or `status` would silently never show it."""

    def names(cls: type) -> list[str]:
        return [f.name for f in fields(cls)]

    assert names(OutboxCounts) == names(OutboxStats)
    assert names(SenderState) == names(SenderStatus)
    assert names(SnapshotIntervals) == names(Intervals)
    assert names(SnapshotIdentity) == [*names(Identity), "context"]


def test_an_agents_own_snapshot_round_trips(tmp_path: Path) -> None:
    """Agent.status() before it opens (no outbox yet) and after stop (final): written, read
    back equal, with exactly the keys status.json has always had."""
    home = tmp_path / "home"
    home.mkdir()
    settings = load_settings(environ={"HOME": str(home)}, home=home, cwd=tmp_path)
    agent = Agent(settings, environ={})
    held = StateDir.acquire(tmp_path / "state")
    for final in (False, True):
        snapshot = agent.status(final=final)
        held.write_status(snapshot)
        assert read_status(tmp_path / "state") == snapshot
        written = json.loads((tmp_path / "state" / STATUS_NAME).read_text())
        assert list(written) == list(TODAYS_FILE)
        assert written["stopped_cleanly"] is final and written["running"] is not final
        assert written["last_beat"] == {} and written["outbox"] is None
    held.release()


# What an older agent wrote (fewer keys), a newer one (keys this one does not know), and
# damage: wrong types, a pid os.kill cannot take, times past what floats and gmtime hold.
DAMAGED = {
    "version": "0.1.0",
    "pid": 2**70,
    "running": "yes",
    "started_ms": 10**400,
    "updated_ms": 10**20,
    "stopped_cleanly": True,
    "experiment_key": "b" * 32,
    "owned": "maybe",
    "identity": ["node"],
    "intervals": {"cpu_s": "fast", "beat_s": 1e400},
    "last_beat": {"ok": 1, "at_ms": "noon"},
    "outbox": {"ready": "12", "dead": 2, "dropped_by_kind": {"metric": "x"}, "new": 1},
    "sender": "paused",
    "pending_in_memory": -0.0,
    "collectors": {"cpu": 5, "disk": {"failures": True, "last_error": 7}},
    "archive": "x" * 5000,
    "from_a_newer_agent": {"whatever": [1, 2]},
}


def test_an_old_or_damaged_file_reads_and_status_prints_what_it_can(tmp_path: Path) -> None:
    """Unknown keys are ignored, missing or mistyped ones read as defaults or None; `status`,
    `status --json`, doctor's agent check, `top`'s header and `report` never crash on it."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    text = json.dumps(DAMAGED).replace("Infinity", "1e400")
    (state / STATUS_NAME).write_text(text)
    snapshot = read_status(state)
    assert snapshot is not None
    assert (snapshot.pid, snapshot.running, snapshot.started_ms) == (None, False, None)
    assert (snapshot.owned, snapshot.identity, snapshot.sender) == (None, None, None)
    assert snapshot.intervals == SnapshotIntervals()
    assert snapshot.last_beat == Beat(None, False, None, None)
    assert snapshot.outbox == OutboxCounts(dead=2)
    assert snapshot.collectors == {"cpu": CollectorState(), "disk": CollectorState()}
    assert snapshot.follow_server is True and snapshot.updated_ms is None

    env = _env(tmp_path, state)
    shown = run_agent(["status"], env)
    assert shown.returncode == 0, shown.stderr  # it says it stopped cleanly: nothing wrong
    assert "Traceback" not in shown.stderr
    assert shown.stdout.splitlines()[:3] == [
        "comet-agent 0.1.0, pid None, not running (healthy)",
        f"experiment  {'b' * 32}  (online, attached, follower)",
        "intervals   keep-alive ? (None) · cpu/ram/load ? (None) · gpu ? (None)",
    ]
    assert "outbox      0 waiting · 2 dead letters · 0 dropped at the size cap" in shown.stdout
    as_json = run_agent(["status", "--json"], env)
    assert as_json.returncode == 0, as_json.stderr
    written = json.loads(as_json.stdout)["snapshot"]
    assert "from_a_newer_agent" not in written and written["pid"] is None

    assert agent_check(state).status == SKIP
    assert f"experiment {'b' * 32} (stopped; backlog 0 messages)" in screen({}, snapshot, 1.0, [])
    drawn = run_agent(["report", str(state)], env)
    assert drawn.returncode == 2 and "Traceback" not in drawn.stderr
    assert "is gone" in drawn.stderr


def test_an_older_agents_file_without_most_keys(tmp_path: Path) -> None:
    """A file from before most parts existed: `status` shows what it has, "?" for the rest."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / STATUS_NAME).write_text('{"version": "0.0.1", "running": true, "pid": 999999999}')
    shown = run_agent(["status"], _env(tmp_path, state))
    assert shown.returncode == 1, shown.stderr
    assert shown.stdout.splitlines() == [
        "comet-agent 0.0.1, pid None, not running (UNHEALTHY)",
        "experiment  None  (online, attached, follower)",
        "intervals   keep-alive ? (None) · cpu/ram/load ? (None) · gpu ? (None)",
        "problem     the agent is not running (it did not stop cleanly: killed, or crashed)",
    ]


def _env(tmp_path: Path, state: Path) -> dict[str, str]:
    from tests.helpers import clean_env

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return clean_env(home, {"COMET_AGENT_STATE_DIRECTORY": str(state)})


def test_unwritable_parent_is_a_clear_error(tmp_path: Path) -> None:
    """A state directory that cannot be created names the path and the setting to change."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AgentError, match=r"cannot create the state directory .*--state-dir"):
        StateDir.acquire(blocker / "state")
