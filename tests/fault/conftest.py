"""Fixtures of the fault suite: an environment tuned for fast faults, agents started and reaped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.schedule import FAST, HTTP_TIMEOUT_S
from tests.helpers import wait_until


@pytest.fixture(name="agent_env")
def _agent_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Debug logs, a 0.5 s read timeout, back-off capped at 1 s, a private state dir."""
    return {
        **env,
        "COMET_AGENT_LOG_LEVEL": "debug",
        "COMET_TIMEOUT_HTTP": str(HTTP_TIMEOUT_S),
        "COMET_AGENT_BACKOFF_MAX_S": "1",
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_AGENT_GIT_METADATA": "false",
        "COMET_AGENT_GIT_PATCH": "false",
        "PYTHONFAULTHANDLER": "1",  # a hang is reported with every thread's stack
    }


@pytest.fixture(name="agents")
def _agents() -> Iterator[list[AgentProcess]]:
    """Agents a test started; any still running at the end is killed (no stray processes)."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.proc.poll() is None:
            agent.kill()


@pytest.fixture(name="start_agent")
def _start_agent(
    server: CometStandIn, agents: list[AgentProcess]
) -> Callable[..., tuple[AgentProcess, str]]:
    """Start ``comet-agent start``; return it, sampling every second, and its experiment key."""

    def start(env: dict[str, str], *args: str) -> tuple[AgentProcess, str]:
        server.answer_keepalive(FAST)
        agent = AgentProcess(["start", *args], env)
        agents.append(agent)
        ready = agent.wait_for("agent.ready", timeout_s=60)
        # Faults start only once the 1 s answer is in force (else sampling stays at 30 s).
        wait_until(lambda: _sampling_every_second(agent), timeout_s=20)
        return agent, str(ready["experiment_key"])

    return start


def _sampling_every_second(agent: AgentProcess) -> bool:
    changes = agent.named("schedule.changed")
    return any(e["job"] == "sample.cpu" and e["interval_s"] == 1.0 for e in changes)
