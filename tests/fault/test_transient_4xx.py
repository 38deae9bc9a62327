"""404 or 413 from every route for a while (a proxy, a deploy): nothing becomes a dead letter."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.checker import assert_delivered, check, taken_from, wait_delivered
from tests.fault.lifecycle import stop_agent

REFUSING_S = 6.0


@pytest.mark.parametrize("status", [404, 413])
def test_a_while_of_404_or_413_loses_nothing(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
    status: int,
) -> None:
    """Every route refuses for 6 s, then Comet is back: all samples arrive, no dead letters.

    Before, each refused sample became a dead letter for good on its first try.
    """
    agent, key = start_agent(agent_env)
    server.outage(status=status)
    time.sleep(REFUSING_S)
    server.recover()
    wait_delivered(server, lambda: taken_from(agent.named("sample.queued")), key, timeout_s=30)
    assert stop_agent(agent) == 0
    assert not agent.named("outbox.rejected")
    assert_delivered(check(server, taken_from(agent.named("sample.queued")), key))
    if status == 404:  # every endpoint: a wrong URL, said once with the fix
        assert len(agent.named("sender.url_wrong")) == 1
