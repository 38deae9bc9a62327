"""The checks of ``comet-agent doctor`` that need no server: GPU, cgroup, git, directories, outbox.

Each returns one ``Check``. Nothing here writes: the outbox is read through a
read-only SQLite connection (``mode=ro``), never through ``agent.delivery.outbox``,
whose opening hands a running agent's leased rows back to the queue.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from agent.collect.base import Roots
from agent.config import CREDENTIAL_NAME, Settings
from agent.delivery.outbox_db import DEAD, LEASED, READY
from agent.doctor.check import FAIL, OK, SKIP, WARN, Check
from agent.errors import CollectorError, NoData
from agent.lifecycle.state import OUTBOX_NAME

GIB = 1 << 30
BACKLOG_WARN_S = 600.0  # a queue older than this is not a passing hiccup
_DEAD_QUERY = "'SELECT endpoint, last_error FROM messages WHERE state = 2'"  # DEAD: a hint only


def gpu_check(settings: Settings, lib: object, environ: Mapping[str, str]) -> Check:
    """NVML and the driver: versions and GPU count, or why GPU sampling is off."""
    from agent.collect.gpu import read_gpu_facts

    reasons: list[str] = []
    facts = read_gpu_facts(settings, lib=lib, environ=environ, on_unavailable=reasons.append)
    if facts is None:
        return Check("gpu", SKIP, "; ".join(reasons) or "no GPU seen")
    items = {str(i["key"]): i["value"] for i in facts.additional}
    detail = (
        f"NVML {items.get('nvml_version')}, driver {items.get('nvidia_driver_version')}, "
        f"CUDA {items.get('cuda_driver_version')}, {len(facts.static_info)} GPU(s)"
    )
    return Check("gpu", OK, detail, data={"gpus": len(facts.static_info), **items})


def cgroup_check(roots: Roots) -> Check:
    """The cgroup limits the samplers will report against."""
    from agent.collect.cgroup import describe

    facts = dict(describe(roots))
    if facts.get("cgroup_version") == "none":
        return Check("cgroup", OK, "no cgroup: the host's CPUs and memory", data=facts)
    quota = facts.get("cgroup_cpu_quota")
    limit = facts.get("cgroup_memory_limit_bytes")
    cpus = f"{quota:g} CPUs" if isinstance(quota, int | float) else "no CPU limit"
    memory = f"{limit / GIB:.1f} GiB" if isinstance(limit, int) else "no memory limit"
    return Check(
        "cgroup",
        OK,
        f"{facts.get('cgroup_version')} {facts.get('cgroup_path')}: {cpus}, {memory}",
        data=facts,
    )


def git_check(settings: Settings, cwd: Path) -> Check:
    """git installed, and whether the directory described is a repository."""
    if not (settings.git_metadata or settings.git_patch):
        return Check("git", SKIP, "git facts are off ([git] metadata and patch = false)")
    if shutil.which("git") is None:
        return Check(
            "git",
            WARN,
            "git is not installed: git metadata and patch are skipped",
            fix="install git, or set [git] metadata = false and patch = false",
        )
    from agent.collect.git import Git

    where = settings.git_directory or cwd
    try:
        top = Git(where, settings.git_timeout_s).value("rev-parse", "--show-toplevel")
    except NoData:
        return Check("git", OK, f"{where} is not in a git repository: git facts are skipped")
    except CollectorError as exc:
        return Check("git", WARN, str(exc), fix="fix the repository, or set [git] directory")
    return Check("git", OK, f"repository at {top}", data={"root": top})


def directory_check(name: str, path: Path, setting: str, need_bytes: int) -> Check:
    """Mode 0700, owned by us, writable, with room: or the command that fixes it."""
    if not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if os.access(parent, os.W_OK | os.X_OK):
            return Check(name, OK, f"{path} does not exist yet; it is created 0700 when needed")
        return Check(
            name,
            FAIL,
            f"{path} cannot be created: {parent} is not writable by this user",
            fix=f"set {setting} to a writable place, or: mkdir -m 700 -p {path}",
        )
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode):
        return Check(name, FAIL, f"{path} is not a directory", fix=f"remove it or change {setting}")
    if info.st_uid != os.geteuid():
        return Check(
            name,
            FAIL,
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})",
            fix=f"chown {os.geteuid()} {path}, or set {setting} to a directory of your own",
        )
    if mode & 0o077:
        return Check(
            name,
            FAIL,
            f"{path} is mode {mode:04o}: other users can read what the agent keeps there",
            fix=f"chmod 700 {path}",
        )
    if not os.access(path, os.W_OK | os.X_OK):
        return Check(name, FAIL, f"{path} is not writable by this user", fix=f"chmod 700 {path}")
    free = shutil.disk_usage(path).free
    data = {"path": str(path), "mode": f"{mode:04o}", "free_bytes": free}
    detail = f"{path}: {mode:04o}, yours, writable, {free / GIB:.1f} GiB free"
    if free < max(GIB, need_bytes):
        least = f"{max(GIB, need_bytes) / GIB:.1f} GiB"
        cap = " or lower [outbox] max_bytes" if need_bytes else ""
        return Check(
            name,
            WARN,
            f"{detail}: under {least}, the agent may run out of room",
            fix=f"free space under {path}{cap}",
            data=data,
        )
    return Check(name, OK, detail, data=data)


def outbox_check(state: Path) -> Check:
    """Backlog and dead letters, read without disturbing a running agent."""
    path = state / OUTBOX_NAME
    orphans = sorted(state.glob(f"runs/*/{OUTBOX_NAME}"))
    left = f"; {len(orphans)} ended run(s) left data for the next start" if orphans else ""
    if not path.exists():
        return Check("outbox", OK, f"no outbox yet in {state}{left}")
    try:
        counts = _read_counts(path)
    except sqlite3.Error as exc:
        return Check(
            "outbox",
            FAIL,
            f"{path} cannot be read ({exc})",
            fix="the next comet-agent start keeps what still reads and moves the damaged "
            "file aside; check the disk",
        )
    waiting = counts.get(READY, (0, None))[0] + counts.get(LEASED, (0, None))[0]
    dead = counts.get(DEAD, (0, None))[0]
    oldest = min((m for _, m in counts.values() if m is not None), default=None)
    age_s = (time.time() * 1000 - oldest) / 1000 if oldest is not None else 0.0
    data = {"waiting": waiting, "dead": dead, "oldest_age_s": round(age_s), "orphans": len(orphans)}
    detail = f"{waiting} waiting, {dead} dead letters{left}"
    if dead:
        return Check(
            "outbox",
            WARN,
            f"{detail}: Comet refused {dead} message(s) for good",
            fix=f"see why: sqlite3 -readonly {path} {_DEAD_QUERY}; send again: comet-agent retry",
            data=data,
        )
    if waiting and age_s > BACKLOG_WARN_S:
        return Check(
            "outbox",
            WARN,
            f"{detail}, the oldest {age_s / 60:.0f} min old: nothing is draining it",
            fix="run comet-agent status for the last error; the next start sends the backlog",
            data=data,
        )
    return Check("outbox", OK, detail, data=data)


def agent_check(state: Path) -> Check:
    """The agent on this state directory, from its status snapshot: running, healthy."""
    from agent.commands.status import assess
    from agent.lifecycle.state import read_status

    snapshot = read_status(state)
    if snapshot is None:
        return Check("agent", SKIP, f"no agent has run on {state}")
    report = assess(snapshot, now_ms=int(time.time() * 1000))
    pid = snapshot.pid
    if not report["running"]:
        return Check("agent", SKIP, f"no agent running on {state} (the last was pid {pid})")
    problems = [str(p) for p in report["problems"]]  # type: ignore[attr-defined]
    if problems:
        return Check(
            "agent",
            WARN,
            f"pid {pid} is running but unwell: " + "; ".join(problems),
            fix="comet-agent status shows the details",
        )
    return Check("agent", OK, f"pid {pid} is running and delivering")


def _read_counts(path: Path) -> dict[int, tuple[int, int | None]]:
    uri = f"file:{quote(str(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=2.0)
    try:
        # Damaged pages the counts do not touch would still stop the next start's reads.
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"damaged: {'; '.join(problems)[:200]}")
        rows = conn.execute(
            "SELECT state, COUNT(*), MIN(created_ms) FROM messages GROUP BY state"
        ).fetchall()
    finally:
        conn.close()
    return {int(state): (int(count), first) for state, count, first in rows}


def systemd_check(settings: Settings, environ: Mapping[str, str]) -> Check:
    """Under systemd: the notify socket and the API key credential."""
    if not (environ.get("INVOCATION_ID") or environ.get("NOTIFY_SOCKET")):
        return Check("systemd", SKIP, "not running under systemd")
    notes = []
    socket = environ.get("NOTIFY_SOCKET")
    notes.append(f"notify socket {socket}" if socket else "no notify socket")
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    has_credential = bool(credentials) and (Path(str(credentials)) / CREDENTIAL_NAME).is_file()
    notes.append(f"credential {CREDENTIAL_NAME} " + ("present" if has_credential else "absent"))
    detail = ", ".join(notes)
    if not has_credential and not settings.api_key:
        return Check(
            "systemd",
            WARN,
            f"{detail}: the service has no API key and records offline",
            fix=f"add LoadCredential={CREDENTIAL_NAME}:/etc/comet-agent/api-key to the unit",
        )
    return Check("systemd", OK, detail)
