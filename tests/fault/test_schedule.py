"""The agent under a timed schedule of every fault the stand-in can play."""

from __future__ import annotations

from collections.abc import Callable

from tests.agent_process import AgentProcess, gaps_s
from tests.fakes.comet_server import CometStandIn
from tests.fault.checker import agent_taken, assert_delivered, check, taken_from, wait_delivered
from tests.fault.lifecycle import stop_agent
from tests.fault.schedule import STANDARD, ScheduleDriver
from tests.helpers import wait_until


def test_fault_schedule_loses_nothing(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
) -> None:
    """Healthy, 503, dropped connections, 429 + Retry-After, 429 + Retry-After-Custom, read
    timeouts, HTML and truncated answers, then healthy, while the agent samples every second:
    every sample of every endpoint arrives with the timestamp it was taken at.

    Bar: zero lost, no reordering within an endpoint (first arrivals in the order taken),
    duplicates 0 except where the stand-in took a request whose answer came after the agent's
    read timeout (at-least-once: the agent cannot know it landed; counted and reported);
    sampling keeps its 1 s pace through the faults (no gap over 2.5 s).
    """
    agent, key = start_agent(agent_env)
    wait_until(lambda: server.count("add-cpu-metrics") >= 1, timeout_s=20)
    with ScheduleDriver(server, STANDARD) as driver:
        driver.wait()
    wait_delivered(server, agent_taken(agent), key, timeout_s=30, phase_at=driver.phase_at)
    assert stop_agent(agent) == 0
    taken = taken_from(agent.named("sample.queued"))
    report = check(server, taken, key, phase_at=driver.phase_at)
    print(f"schedule {driver.describe()}: {report.summary()}")
    assert_delivered(report, context=f"schedule {driver.describe()}")
    cpu = [t.timestamp_ms for t in taken if t.collector == "cpu"]
    assert len(cpu) >= driver.total_s - 2
    assert max(gaps_s(cpu[:-1])) < 2.5, gaps_s(cpu)  # the stop's last sample comes early
    faults = {r.fault for r in server.received(ok_only=False)}
    assert {"status", "drop", "slow", "html", "truncated"} <= faults  # each fault was met
    assert server.count("add-cpu-metrics", ok_only=False) > server.count("add-cpu-metrics")
    assert "Traceback" not in agent.stderr
