"""A `run` killed beside a running daemon: the daemon takes in what it left, while it runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.checker import assert_delivered, check, taken_from, wait_delivered
from tests.fault.lifecycle import stop_agent
from tests.helpers import wait_until

ADOPT_EVERY_S = 1  # [agent] adopt_interval_s; the default (60 s) would take a minute
DELIVERED_WITHIN_S = 30.0  # generous on a loaded host: adoption every 1 s, back-off up to 1 s
OUTAGE_SAMPLES = 3  # cpu samples the run queues while Comet is down, before its kill


def test_a_daemon_delivers_what_a_run_killed_beside_it_left(
    server: CometStandIn,
    agent_env: dict[str, str],
    agents: list[AgentProcess],
    start_agent: Callable[..., tuple[AgentProcess, str]],
) -> None:
    """A daemon runs; a `run` beside it queues samples while Comet is down and is killed -9;
    Comet comes back: the daemon, still running, sends every sample the run had queued, each
    once, within a bounded time, and the run's runs/<pid> directory goes.

    Before, a daemon adopted ended runs' outboxes only when it started: the samples waited
    in runs/<pid> until its next restart.
    """
    env = {**agent_env, "COMET_AGENT_ADOPT_INTERVAL_S": str(ADOPT_EVERY_S)}
    daemon, _ = start_agent(env)
    run = AgentProcess(["run", "--", sys.executable, "-c", "import time; time.sleep(600)"], env)
    agents.append(run)
    run_key = str(run.wait_for("agent.ready", timeout_s=60)["experiment_key"])
    private = Path(env["COMET_AGENT_STATE_DIRECTORY"]) / "runs" / str(run.pid)
    assert private.is_dir()  # the daemon holds the state directory: the run has its own
    run.wait_for("experiment.joined", timeout_s=60)

    server.outage(status=503)
    down_ms = time.time() * 1000
    wait_until(lambda: sum(s > down_ms for s in run.samples("cpu")) >= OUTAGE_SAMPLES, timeout_s=60)
    run.kill()
    taken = taken_from(run.named("sample.queued"))
    kept = [t for t in taken if t.timestamp_ms > down_ms]
    assert kept, "the run queued nothing while Comet was down"
    arrived = {r.body.get("timestamp") for r in server.received("add-cpu-metrics")}  # type: ignore[union-attr]
    assert not arrived & {t.timestamp_ms for t in kept if t.collector == "cpu"}

    server.recover()
    report = wait_delivered(server, lambda: taken, run_key, timeout_s=DELIVERED_WITHIN_S)
    # Each once: the run was killed during the outage, so no request of it was in flight
    # with Comet taking it; a copy would come from adopting the same rows twice.
    assert_delivered(report, allow_unexpected=True, context=f"run {run.pid} killed in an outage")
    adopted = daemon.named("outbox.adopted")
    assert adopted and adopted[0]["path"] == str(private / "outbox.sqlite3"), daemon.stderr[-3000:]
    assert daemon.proc.poll() is None  # taken in while it runs, not at a restart
    wait_until(lambda: not private.exists(), timeout_s=10)

    assert stop_agent(daemon) == 0
    assert_delivered(check(server, taken, run_key), allow_unexpected=True)  # still once each
