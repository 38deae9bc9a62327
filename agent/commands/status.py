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
        print(json.dumps({**report, "snapshot": snapshot}, indent=2, default=str))
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


def assess(snapshot: Mapping[str, object] | None, *, now_ms: int) -> dict[str, object]:
    """Decide health from a snapshot: running, delivering, not paused, outbox writable."""
    problems: list[str] = []
    if snapshot is None:
        return {
            "running": False,
            "healthy": False,
            "problems": ["no agent has run on this state directory (no status.json)"],
        }
    pid = snapshot.get("pid")
    updated = snapshot.get("updated_ms")
    running = bool(snapshot.get("running")) and isinstance(pid, int) and _alive(pid)
    if running and isinstance(updated, int) and now_ms - updated > STALE_S * 1000:
        problems.append(
            f"the agent (pid {pid}) has not updated its status for "
            f"{(now_ms - updated) / 1000:.0f} s; it may be hung"
        )
    clean = not running and snapshot.get("stopped_cleanly") is True
    if not running and not clean:
        problems.append("the agent is not running (it did not stop cleanly: killed, or crashed)")
    sender = _map(snapshot.get("sender"))
    if sender.get("paused_auth") or sender.get("paused_url"):
        problems.append(f"sending is paused: {sender.get('last_error')}")
    outbox = _map(snapshot.get("outbox"))
    intervals = _map(snapshot.get("intervals"))
    oldest = outbox.get("oldest_created_ms")
    cpu_s = intervals.get("cpu_s")
    limit_s = max(300.0, 10 * float(cpu_s)) if isinstance(cpu_s, int | float) else 300.0
    if running and isinstance(oldest, int) and (now_ms - oldest) / 1000 > limit_s:
        problems.append(
            f"the oldest queued message is {(now_ms - oldest) / 1000:.0f} s old; "
            f"last error: {sender.get('last_error')}"
        )
    if isinstance(snapshot.get("pending_in_memory"), int) and snapshot["pending_in_memory"]:
        problems.append(
            f"{snapshot['pending_in_memory']} messages are held in memory: the "
            "outbox cannot be written (disk full?)"
        )
    beat = _map(snapshot.get("last_beat"))
    beat_s = intervals.get("beat_s")
    if running and beat and not beat.get("ok") and isinstance(beat_s, int | float):
        problems.append(f"the last keep-alive failed: {beat.get('error')}")
    return {
        "running": running,
        "stopped_cleanly": clean,
        "healthy": not problems,
        "problems": problems,
    }


def render(report: Mapping[str, object], snapshot: Mapping[str, object] | None) -> str:
    """A few readable lines."""
    if snapshot is None:
        return "comet-agent: " + "; ".join(str(p) for p in _list(report.get("problems")))
    now = time.time() * 1000
    started = snapshot.get("started_ms")
    age = _ago((now - started) / 1000) if isinstance(started, int | float) else "?"
    state = "healthy" if report["healthy"] else "UNHEALTHY"
    run = f"running for {age}" if report["running"] else "not running"
    updated = snapshot.get("updated_ms")
    if report.get("stopped_cleanly") and isinstance(updated, int | float):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(updated / 1000))
        run = f"stopped cleanly at {stamp}"
    lines = [f"comet-agent {snapshot.get('version')}, pid {snapshot.get('pid')}, {run} ({state})"]
    mode = "offline" if snapshot.get("offline") else "online"
    who = "created by the agent" if snapshot.get("owned") else "attached"
    role = "leader" if snapshot.get("leader") else "follower"
    context = _map(snapshot.get("identity")).get("context")
    link = snapshot.get("link") or ""
    lines.append(
        f"experiment  {snapshot.get('experiment_key')} {link}".rstrip()
        + f"  ({mode}, {who}, {role}{', ' + str(context) if context else ''})"
    )
    iv = _map(snapshot.get("intervals"))
    follow = "" if snapshot.get("follow_server", True) else "  [server intervals ignored]"
    lines.append(
        f"intervals   keep-alive {_s(iv.get('beat_s'))} ({iv.get('beat_source')}) · "
        f"cpu/ram/load {_s(iv.get('cpu_s'))} ({iv.get('cpu_source')}) · "
        f"gpu {_s(iv.get('gpu_s'))} ({iv.get('gpu_source')}){follow}"
    )
    beat = _map(snapshot.get("last_beat"))
    if beat:
        at = beat.get("at_ms")
        when = _ago((now - at) / 1000) + " ago" if isinstance(at, int | float) else "?"
        outcome = "ok" if beat.get("ok") else f"failed: {beat.get('error')}"
        lines.append(f"last beat   {when}: {outcome}")
        if beat.get("ok"):
            lines.append(f"            answer {json.dumps(beat.get('answer'))}")
    outbox = _map(snapshot.get("outbox"))
    if outbox:
        oldest = outbox.get("oldest_created_ms")
        age_text = (
            f", oldest {_ago((now - oldest) / 1000)}" if isinstance(oldest, int | float) else ""
        )
        lines.append(
            f"outbox      {outbox.get('ready', 0)} waiting{age_text} · "
            f"{outbox.get('dead', 0)} dead letters · "
            f"{outbox.get('dropped_total', 0)} dropped at the size cap"
        )
    if snapshot.get("archive"):
        copy = "" if snapshot.get("offline") else " (local copy)"
        lines.append(f"archive     {snapshot['archive']}{copy}; draw it: comet-agent report")
    sender = _map(snapshot.get("sender"))
    if sender.get("last_error"):
        lines.append(f"last error  {sender.get('last_error')}")
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


def _map(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


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
