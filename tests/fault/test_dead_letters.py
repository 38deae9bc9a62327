"""Dead letters after a run: `status` shows them, `retry` queues them, the next run sends them."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.delivery.outbox import Outbox
from agent.message import Message
from tests.fakes.comet_server import CometStandIn
from tests.helpers import run_agent

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000_000


def test_status_shows_dead_letters_and_retry_sends_them(
    agent_env: dict[str, str], server: CometStandIn
) -> None:
    """A message Comet refused: `status` names it, `retry` queues it, the next `run` sends it."""
    state = Path(agent_env["COMET_AGENT_STATE_DIRECTORY"])
    with Outbox(state / "outbox.sqlite3") as box:
        box.put(Message("add-load-metrics", KEY, {"loadAverage": 0.5, "timestamp": T0}, T0))
        box.reject([row.id for row in box.lease(10)], "add-load-metrics: HTTP 404 (a proxy)")
    status = run_agent(["status"], agent_env)
    assert "dead letters 1 " in status.stdout and "comet-agent retry" in status.stdout
    retry = run_agent(["retry"], agent_env)
    assert retry.returncode == 0 and "1 dead letter(s)" in retry.stdout
    assert "no dead letters" in run_agent(["retry"], agent_env).stdout
    result = run_agent(["run", "--", sys.executable, "-c", "pass"], agent_env)
    assert result.returncode == 0, result.stderr
    assert [r.body["timestamp"] for r in server.received("add-load-metrics")].count(T0) == 1
    assert "dead letters" not in run_agent(["status"], agent_env).stdout


def test_an_ended_runs_dead_letters_survive_its_adoption(
    agent_env: dict[str, str], server: CometStandIn
) -> None:
    """A run's private outbox is adopted: its waiting rows are sent, its dead letters kept."""
    state = Path(agent_env["COMET_AGENT_STATE_DIRECTORY"])
    private = state / "runs" / "99999"
    private.mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    with Outbox(private / "outbox.sqlite3") as box:
        box.put(Message("add-load-metrics", KEY, {"loadAverage": 0.1, "timestamp": T0}, T0))
        box.reject([row.id for row in box.lease(10)], "add-load-metrics: HTTP 400 (refused)")
        box.put(Message("add-load-metrics", KEY, {"loadAverage": 0.2, "timestamp": T0 + 1}, T0 + 1))
    result = run_agent(["run", "--", sys.executable, "-c", "pass"], agent_env)
    assert result.returncode == 0, result.stderr
    assert [r.body["timestamp"] for r in server.received("add-load-metrics")].count(T0 + 1) == 1
    assert not private.exists()
    assert "dead letters 1 " in run_agent(["status"], agent_env).stdout  # was: gone with the run
