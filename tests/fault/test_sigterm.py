"""SIGTERM during an outage: the flush deadline holds, the rest waits on disk for the next start."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.checker import assert_delivered, check, taken_from, wait_delivered
from tests.fault.lifecycle import stop_agent, wait_agent
from tests.helpers import wait_until

STOP_TIMEOUT_S = 3.0
MARGIN_S = 2.5  # interpreter exit, the last status write, a loaded 2-core CI machine


@pytest.mark.parametrize(
    ("mode", "http_timeout_s"),
    [("status", None), ("drop", None), ("slow", "10")],
    ids=["503", "drop", "slow-answers-default-timeout"],
)
def test_sigterm_during_outage_honours_the_deadline(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
    mode: str,
    http_timeout_s: str | None,
) -> None:
    """SIGTERM while Comet is down (503, dropped connections, or answers slower than the
    default 10 s read timeout): the agent exits 0 within COMET_AGENT_STOP_TIMEOUT_S (3 s) plus
    a small margin, says how many messages it kept, and the next start delivers them.

    Bar: exit 0 within 3 s + 2.5 s of the signal; outbox.kept > 0 logged; zero lost, no
    reordering, no duplicates after the restart.
    """
    env = {**agent_env, "COMET_AGENT_STOP_TIMEOUT_S": str(STOP_TIMEOUT_S)}
    if http_timeout_s is not None:
        env["COMET_TIMEOUT_HTTP"] = http_timeout_s
    agent, key = start_agent(env)
    wait_until(lambda: server.count("add-cpu-metrics") >= 1, timeout_s=20)
    server.outage(mode=mode, status=503, delay_s=30.0 if mode == "slow" else 0.0)
    wait_until(lambda: len(agent.samples()) >= 4, timeout_s=20)
    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    code = wait_agent(agent, timeout_s=30)
    took_s = time.monotonic() - started
    assert code == 0, agent.stderr[-3000:]
    assert took_s < STOP_TIMEOUT_S + MARGIN_S, f"exit took {took_s:.1f} s"
    kept = agent.named("outbox.kept")
    assert kept and int(kept[0]["count"]) > 0  # type: ignore[call-overload]
    taken = taken_from(agent.named("sample.queued"))
    server.recover()
    again, _ = start_agent(env)
    wait_delivered(server, lambda: taken, key, timeout_s=30)
    assert stop_agent(again) == 0
    assert_delivered(check(server, taken, key), context=f"SIGTERM after {took_s:.1f} s")
    assert "Traceback" not in agent.stderr
