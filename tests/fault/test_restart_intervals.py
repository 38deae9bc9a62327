"""A restart during an outage keeps sampling at the intervals the server set, not at 30 s."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.lifecycle import stop_agent

DOWN_S = 6.0


def test_a_restart_during_an_outage_keeps_the_server_intervals(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
    agents: list[AgentProcess],
) -> None:
    """The server said 1 s; Comet goes down; the agent restarts: still ~1 sample a second."""
    first, key = start_agent(agent_env)
    assert stop_agent(first) == 0
    server.outage(mode="drop")
    again = AgentProcess(["start"], {**agent_env, "COMET_EXPERIMENT_KEY": key})
    agents.append(again)
    ready = again.wait_for("agent.ready", timeout_s=60)
    intervals = ready["intervals"]
    assert isinstance(intervals, dict)
    assert (intervals["cpu_s"], intervals["cpu_source"]) == (1.0, "server")  # was 30 s, default
    time.sleep(DOWN_S)
    cpu = [e for e in again.named("sample.queued") if e["collector"] == "cpu"]
    assert len(cpu) >= DOWN_S / 2  # was one: the first, a second in, then 30 s
    assert stop_agent(again) == 0
