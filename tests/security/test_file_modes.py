"""Every file and directory the agent creates is private, even under `umask 0`.

Bar: under umask 0, every file the agent creates in its state and offline
directories (outbox and its -wal/-shm, status.json, locks, a run's private
directory, the partial directory's files, archives, upload's outbox,
`uploaded/`) is 0600 and every directory 0700, the XDG parents it had to
create included.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import run_agent, wait_until
from tests.security.leaks import launcher


def _modes(root: Path) -> dict[str, str]:
    """Relative path → octal mode of everything under `root` (root included); a directory's
    path ends in "/" (read when the snapshot is taken: it may be gone by the check)."""
    out = {"./": f"{stat.S_IMODE(root.stat().st_mode):04o}"}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root)) + ("/" if stat.S_ISDIR(st.st_mode) else "")
        out[rel] = f"{stat.S_IMODE(st.st_mode):04o}"
    return out


def _open(modes: dict[str, str], root: Path) -> dict[str, str]:
    """The entries of `modes` that are not 0700 directories or 0600 files."""
    bad = {}
    for rel, mode in modes.items():
        want = "0700" if rel.endswith("/") else "0600"
        if mode != want:
            bad[rel] = mode
    return bad


def _run(args: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(
        launcher(args, umask=0), env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_online_state_files_under_umask_0(
    server: CometStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    """start, a run beside it (runs/<pid>), then upload: all 0600/0700 from the XDG root down."""
    home = Path(env["HOME"])
    xdg = home / "xdg"  # does not exist: the agent creates xdg/state/comet-agent
    base = {**env, "XDG_STATE_HOME": str(xdg / "state"), "XDG_DATA_HOME": str(xdg / "data")}
    server.answer_keepalive({"isAliveBeatDurationMillis": 1000, "cpuMonitorIntervalMillis": 1000})
    daemon = AgentProcess(["start"], base, cwd=tmp_path, argv=launcher(["start"], umask=0))
    state = xdg / "state" / "comet-agent"
    wait_until(lambda: (state / "status.json").exists(), timeout_s=30)
    wait_until(lambda: server.count("add-cpu-metrics") >= 2, timeout_s=30)
    gate = tmp_path / "gate"
    script = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
    beside = AgentProcess(
        ["run"],
        base,
        cwd=tmp_path,
        argv=launcher(["run", "--", sys.executable, "-c", script, str(gate)], umask=0),
    )
    wait_until(lambda: any((state / "runs").glob("*/outbox.sqlite3")), timeout_s=30)
    during = _modes(xdg)
    gate.write_text("")
    assert beside.wait(timeout_s=60) == 0, beside.stderr[-2000:]
    assert daemon.stop() == 0, daemon.stderr[-2000:]
    after = _modes(xdg)

    assert _open(during, xdg) == {}
    assert _open(after, xdg) == {}
    names = {Path(rel).name for rel in during}
    assert {"outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm"} <= names
    assert {"status.json", "agent.lock"} <= names
    assert any(rel.startswith("state/comet-agent/runs/") for rel in during)


def test_offline_files_under_umask_0(env: dict[str, str], tmp_path: Path) -> None:
    """An offline run's zip, a killed run's partial directory, then upload's own files."""
    home = Path(env["HOME"])
    xdg = home / "xdg"
    base = {
        **env,
        "XDG_STATE_HOME": str(xdg / "state"),
        "XDG_DATA_HOME": str(xdg / "data"),
        "COMET_OFFLINE": "true",
        "COMET_SYSTEM_CPU_INTERVAL": "1",
    }
    _run(["run", "--", sys.executable, "-c", "print(1)"], base, tmp_path)
    killed = AgentProcess(["start"], base, cwd=tmp_path, argv=launcher(["start"], umask=0))
    offline = xdg / "data" / "comet-agent"
    wait_until(
        lambda: any(p.stat().st_size for p in offline.glob("*.partial/messages.json")),
        timeout_s=30,
    )
    killed.kill()
    offline_modes = _modes(xdg)
    assert any(rel.endswith(".zip") for rel in offline_modes)
    assert any(rel.endswith(".partial/messages.json") for rel in offline_modes)
    assert _open(offline_modes, xdg) == {}

    _run(["upload", "--dry-run"], {k: v for k, v in base.items() if k != "COMET_OFFLINE"}, tmp_path)
    assert _open(_modes(xdg), xdg) == {}


def test_upload_files_under_umask_0(
    server: CometStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    """upload's outbox (with -wal, -shm), its lock and uploaded/ are private too."""
    home = Path(env["HOME"])
    xdg = home / "xdg"
    base = {**env, "XDG_STATE_HOME": str(xdg / "state"), "XDG_DATA_HOME": str(xdg / "data")}
    _run(
        ["run", "--", sys.executable, "-c", "print(1)"], {**base, "COMET_OFFLINE": "true"}, tmp_path
    )
    _run(["upload"], base, tmp_path)
    modes = _modes(xdg)
    names = {Path(rel).name for rel in modes}
    assert {"upload-outbox.sqlite", "upload.lock", "uploaded"} <= names
    assert _open(modes, xdg) == {}
    done = run_agent(["status"], base)  # reads, creates nothing
    assert _modes(xdg) == modes, done.stdout
