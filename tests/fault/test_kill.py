"""kill -9 at random moments of a faulty schedule, then a restart on the same state directory."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.checker import (
    assert_delivered,
    check,
    stamps_of,
    taken_from,
    wait_delivered,
)
from tests.fault.lifecycle import stop_agent
from tests.fault.schedule import ScheduleDriver, random_faults
from tests.helpers import wait_until

SEED = int(os.environ.get("FAULT_SEED", "20240607"))
ROUNDS = 4


def test_kill_9_at_random_moments_loses_nothing(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
) -> None:
    """Four rounds (seeded): start, sample under random faults, kill -9 at a random moment,
    restart on the same state directory, let it drain.

    Bar: every sample the killed agent logged as queued arrives under the killed agent's
    experiment key, none reordered within an endpoint; duplicates only of the items of the one
    request in flight at the kill (the sender is one thread: Comet took it, the ack never
    happened) or after a late answer, all reported; samples the restarted agent took arrive
    too, without duplicates. Set FAULT_SEED to replay another sequence.
    """
    rng = random.Random(SEED)
    lines = []
    for round_no in range(ROUNDS):
        agent, key = start_agent(agent_env)
        wait_until(lambda a=agent: len(a.named("sample.queued")) >= 1, timeout_s=20)
        phases = random_faults(rng, total_s=8.0)
        kill_after_s = rng.uniform(0.5, 7.5)
        with ScheduleDriver(server, phases) as driver:
            time.sleep(kill_after_s)
            killed_at = time.time()
            agent.kill()
        taken = taken_from(agent.named("sample.queued"))
        context = (
            f"seed {SEED} round {round_no}: kill -9 {kill_after_s:.2f} s into {driver.describe()}"
        )
        again, again_key = start_agent(agent_env)
        report = wait_delivered(server, lambda t=taken: t, key, timeout_s=30)
        assert stop_agent(again) == 0
        report = check(server, taken, key, phase_at=driver.phase_at)
        lines.append(f"{context}: {report.summary()}")
        assert_delivered(
            report,
            allowed_duplicates=_in_flight(server, key, killed_at),
            allow_unexpected=True,
            context=context,
        )
        own = check(server, taken_from(again.named("sample.queued")), again_key)
        assert_delivered(own, context=f"{context}: the restarted agent's own samples")
    print("\n".join(lines))


def _in_flight(server: CometStandIn, key: str, killed_at: float) -> dict[str, set[int]]:
    """The stamps of the last request of `key` that the stand-in took before the kill."""
    before = [r for r in server.received() if r.experiment_key == key and r.at <= killed_at]
    return stamps_of(max(before, key=lambda r: r.at)) if before else {}
