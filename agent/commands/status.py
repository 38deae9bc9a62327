"""``comet-agent status``: what the agent on this state directory is doing, and whether it is well.

It reads the snapshot the agent rewrites every few seconds (``status.json``
in the state directory) and checks that the process is alive. Exit 0 when
healthy, 1 otherwise, with each reason on its own line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from agent.config import Settings
from agent.delivery.outbox_db import count_dead, requeue_dead
from agent.errors import UsageError
from agent.lifecycle.snapshot import StatusSnapshot
from agent.lifecycle.state import OUTBOX_NAME, STATUS_NAME, read_status

STALE_S = 30.0  # three missed snapshots


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the status; return 0 when healthy, 1 when not."""
    snapshot = read_status(settings.state_directory)
    if snapshot is None and (settings.state_directory / STATUS_NAME).exists():
        raise UsageError(
            f"{settings.state_directory / STATUS_NAME} cannot be read (damaged, or not written "
            "by comet-agent); a running agent rewrites it within 10 s"
        )
    report = assess(snapshot, now_ms=int(time.time() * 1000))
    # From the outbox files, not the snapshot: a run's last snapshot predates its stop flush.
    report["dead_letters"] = dead = dead_letters(settings.state_directory)
    if args.json:
        shown = snapshot.as_json() if snapshot is not None else None
        print(json.dumps({**report, "snapshot": shown}, indent=2, default=str))
    else:
        print(render(report, snapshot))
        if dead:
            print(f"dead letters {dead} refused by Comet, kept; send again: comet-agent retry")
    return 0 if report["healthy"] else 1


def retry_command(_args: argparse.Namespace, settings: Settings) -> int:
    """``comet-agent retry``: queue every dead letter again (tries reset); exit 0.

    A refusal can pass (a URL fixed, a proxy that answered 404 for a while). A
    running agent sends them at once; otherwise the next start does.
    """
    state = settings.state_directory
    total = 0
    for path in _outboxes(state):
        count = requeue_dead(path)
        if count:
            print(f"comet-agent: {count} dead letter(s) in {path} queued again")
        total += count
    if not total:
        print(f"comet-agent: no dead letters under {state}")
    else:
        print("comet-agent: a running agent sends them now; otherwise the next start does")
    return 0


def dead_letters(state: Path) -> int:
    """Return how many dead letters the outboxes under `state` hold."""
    return sum(count_dead(path) for path in _outboxes(state))


def _outboxes(state: Path) -> list[Path]:
    """The outbox files under `state`: the agent's own and those of runs beside it."""
    found = [state / OUTBOX_NAME, *sorted(state.glob(f"runs/*/{OUTBOX_NAME}"))]
    return [path for path in found if path.is_file()]


def assess(snapshot: StatusSnapshot | None, *, now_ms: int) -> dict[str, object]:
    """Decide health from a snapshot: running, delivering, not paused, outbox writable."""
    problems: list[str] = []
    if snapshot is None:
        return {
            "running": False,
            "healthy": False,
            "problems": ["no agent has run on this state directory (no status.json)"],
        }
    pid, updated = snapshot.pid, snapshot.updated_ms
    running = snapshot.running and pid is not None and _alive(pid)
    if running and updated is not None and now_ms - updated > STALE_S * 1000:
        problems.append(
            f"the agent (pid {pid}) has not updated its status for "
            f"{(now_ms - updated) / 1000:.0f} s; it may be hung"
        )
    clean = not running and snapshot.stopped_cleanly
    if not running and not clean:
        problems.append("the agent is not running (it did not stop cleanly: killed, or crashed)")
    sender = snapshot.sender
    last_error = sender.last_error if sender is not None else None
    if sender is not None and (sender.paused_auth or sender.paused_url):
        problems.append(f"sending is paused: {last_error}")
    oldest = snapshot.outbox.oldest_created_ms if snapshot.outbox is not None else None
    cpu_s = snapshot.intervals.cpu_s
    limit_s = max(300.0, 10 * cpu_s) if cpu_s is not None else 300.0
    if running and oldest is not None and (now_ms - oldest) / 1000 > limit_s:
        problems.append(
            f"the oldest queued message is {(now_ms - oldest) / 1000:.0f} s old; "
            f"last error: {last_error}"
        )
    if snapshot.pending_in_memory:
        problems.append(
            f"{snapshot.pending_in_memory} messages are held in memory: the "
            "outbox cannot be written (disk full?)"
        )
    beat = snapshot.last_beat
    if running and beat is not None and not beat.ok and snapshot.intervals.beat_s is not None:
        problems.append(f"the last keep-alive failed: {beat.error}")
    return {
        "running": running,
        "stopped_cleanly": clean,
        "healthy": not problems,
        "problems": problems,
    }


def render(report: Mapping[str, object], snapshot: StatusSnapshot | None) -> str:
    """A few readable lines."""
    if snapshot is None:
        return "comet-agent: " + "; ".join(str(p) for p in _list(report.get("problems")))
    now = time.time() * 1000
    started = snapshot.started_ms
    age = _ago((now - started) / 1000) if started is not None else "?"
    state = "healthy" if report["healthy"] else "UNHEALTHY"
    run = f"running for {age}" if report["running"] else "not running"
    if report.get("stopped_cleanly") and snapshot.updated_ms is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(snapshot.updated_ms / 1000))
        run = f"stopped cleanly at {stamp}"
    lines = [f"comet-agent {snapshot.version}, pid {snapshot.pid}, {run} ({state})"]
    mode = "offline" if snapshot.offline else "online"
    who = "created by the agent" if snapshot.owned else "attached"
    role = "leader" if snapshot.leader else "follower"
    context = snapshot.identity.context if snapshot.identity is not None else None
    link = snapshot.link or ""
    lines.append(
        f"experiment  {snapshot.experiment_key} {link}".rstrip()
        + f"  ({mode}, {who}, {role}{', ' + context if context else ''})"
    )
    iv = snapshot.intervals
    follow = "" if snapshot.follow_server else "  [server intervals ignored]"
    lines.append(
        f"intervals   keep-alive {_s(iv.beat_s)} ({iv.beat_source}) · "
        f"cpu/ram/load {_s(iv.cpu_s)} ({iv.cpu_source}) · "
        f"gpu {_s(iv.gpu_s)} ({iv.gpu_source}){follow}"
    )
    beat = snapshot.last_beat
    if beat is not None:
        when = _ago((now - beat.at_ms) / 1000) + " ago" if beat.at_ms is not None else "?"
        outcome = "ok" if beat.ok else f"failed: {beat.error}"
        lines.append(f"last beat   {when}: {outcome}")
        if beat.ok:
            lines.append(f"            answer {json.dumps(beat.answer, default=str)}")
    outbox = snapshot.outbox
    if outbox is not None:
        oldest = outbox.oldest_created_ms
        age_text = f", oldest {_ago((now - oldest) / 1000)}" if oldest is not None else ""
        lines.append(
            f"outbox      {outbox.ready} waiting{age_text} · "
            f"{outbox.dead} dead letters · "
            f"{outbox.dropped_total} dropped at the size cap"
        )
    if snapshot.archive:
        copy = "" if snapshot.offline else " (local copy)"
        lines.append(f"archive     {snapshot.archive}{copy}; draw it: comet-agent report")
    if snapshot.sender is not None and snapshot.sender.last_error:
        lines.append(f"last error  {snapshot.sender.last_error}")
    for problem in _list(report.get("problems")):
        lines.append(f"problem     {problem}")
    return "\n".join(lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _s(value: object) -> str:
    return f"{value:g} s" if isinstance(value, int | float) else "?"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
