"""Comet comes back: the outage ends for every endpoint, not only for the one that got a 200.

A long outage grows each endpoint's back-off (here up to 60 s, the default cap). When Comet
answers again, the keep-alive's 200 must reopen every gate, so what the outage held goes
out at once, and a stop soon after has nothing left to keep: in a Kubernetes sidecar with an
emptyDir state, "kept for the next start" means lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.checker import assert_delivered, check, taken_from
from tests.fault.lifecycle import stop_agent

OUTAGE_S = 12.0  # back-offs of 0.5, 1, 2, 4, 8 s: the next wait is 8-16 s
AFTER_S = 3.0  # the keep-alive answers every second


def test_recovery_ends_every_back_off_before_the_stop(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
) -> None:
    """Outage, recovery, SIGTERM 3 s later with a 2 s flush: every sample arrives, none kept.

    Before, each typed endpoint waited out the back-off it earned during the outage, and
    the stop flush honoured it: most samples were only "kept" at exit.
    """
    env = {**agent_env, "COMET_AGENT_BACKOFF_MAX_S": "60", "COMET_AGENT_STOP_TIMEOUT_S": "2"}
    agent, key = start_agent(env)
    server.outage(status=503)
    time.sleep(OUTAGE_S)
    server.recover()
    time.sleep(AFTER_S)
    assert stop_agent(agent) == 0
    assert not agent.named("outbox.kept"), agent.named("outbox.kept")
    taken = taken_from(agent.named("sample.queued"))
    assert_delivered(check(server, taken, key))
