"""`comet-agent start` with a server that echoes the key in every error it can.

Bar: not one 12-character piece of the canary key in the agent's log (JSON and
console, DEBUG: every level at once), in `status` / `status --json`, in any
file of the state directory (the outbox, its -wal and -shm read raw while the
agent runs and after, status.json), nor in the agent's command line or
process title. The agent runs with core dumps off; its hard limit is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, run_agent, wait_until
from tests.security.leaks import (
    can_raise_core_limit,
    core_limits,
    launcher,
    leaks_in,
    proc_text,
    tree_leaks,
)

FAST = {
    "isAliveBeatDurationMillis": 1000,
    "cpuMonitorIntervalMillis": 1000,
    "gpuMonitorIntervalMillis": 1000,
}
ECHO = {"msg": f"stand-in does not like {CANARY_KEY}", "sdk_error_code": 1}
REDIRECT = {"Location": f"http://127.0.0.1:1/login?apiKey={CANARY_KEY}&next=/clientlib/"}
CORE_SOFT = 1 << 20


def echo_faults(server: CometStandIn) -> None:
    """Errors whose text carries the key: a rejection, retries, redirects."""
    server.fail("log-other", status=400, body=ECHO)  # rejected: an ERROR line, a dead letter kept
    server.fail("add-cpu-metrics", status=503, body=ECHO, times=2)  # retried: WARNING
    server.fail("add-ram-metrics", status=302, headers=REDIRECT, times=2)  # its row's last_error


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_start_logs_status_and_state_hold_no_key(
    server: CometStandIn, env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    """Every level, both formats, status while running and after, the state files raw."""
    state = tmp_path / "state"
    agent_env = {
        **env,
        "COMET_AGENT_LOG_LEVEL": "debug",
        "COMET_AGENT_LOG_FORMAT": fmt,
        "COMET_AGENT_BACKOFF_MAX_S": "1",
        "COMET_AGENT_STATE_DIRECTORY": str(state),
    }
    server.answer_keepalive(FAST)
    echo_faults(server)
    core = can_raise_core_limit(CORE_SOFT)
    args = ["start"]
    agent = AgentProcess(
        args, agent_env, cwd=tmp_path, argv=launcher(args, core_soft=CORE_SOFT if core else None)
    )
    wait_until(lambda: server.count("add-cpu-metrics") >= 2, timeout_s=30)
    wait_until(lambda: server.count("add-ram-metrics") >= 1, timeout_s=30)
    # Every beat redirected until status.json shows it (the beat's error is kept there).
    server.outage(routes={"keep-alive"}, status=302, headers=REDIRECT)
    wait_until(lambda: "keep-alive: HTTP 302" in _read(state / "status.json"), timeout_s=30)
    running = {
        "cmdline": proc_text(agent.pid, "cmdline"),
        "comm": proc_text(agent.pid, "comm"),
        "status": proc_text(agent.pid, "status"),
    }
    limits = core_limits(agent.pid)
    status_running = _read(state / "status.json")
    files_running = tree_leaks(state)
    server.recover()
    assert {p.name for p in state.iterdir()} >= {"outbox.sqlite3-wal", "outbox.sqlite3-shm"}
    shown = run_agent(["status"], agent_env)
    shown_json = run_agent(["status", "--json"], agent_env)
    assert agent.stop() == 0, agent.stderr[-3000:]

    for name, data in running.items():
        assert leaks_in(data) == [], name
    assert files_running == {}
    assert tree_leaks(state) == {}
    assert leaks_in(agent.stderr + agent.stdout) == []
    assert leaks_in(shown.stdout + shown.stderr) == []
    assert leaks_in(shown_json.stdout + shown_json.stderr) == []
    assert "redirected to http://127.0.0.1:1/login?apiKey=***" in status_running
    assert "stand-in does not like ***" in agent.stderr  # the echo arrived, masked
    if fmt == "json":
        assert agent.named("outbox.rejected")
        assert any(e["level"] == "warning" for e in agent.events)
        assert any(e["level"] == "debug" for e in agent.events)
    if core:
        assert limits == ("0", core_limits(os.getpid())[1])  # the hard limit is kept
    else:
        assert limits[0] == "0"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
