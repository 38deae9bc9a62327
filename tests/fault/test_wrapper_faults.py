"""The wrapper under faults: its death ends the command; Comet's trouble never holds training.

Issue 12, items 7 (kill -9 on ``run``), 9 (``start`` creating during an outage) and 3 (4xx
at attach).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.schedule import FAST
from tests.helpers import run_agent, wait_until

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_kill_9_on_run_ends_the_command(agent_env: dict[str, str], tmp_path: Path) -> None:
    """SIGKILL on the wrapper: the command gets its parent-death signal, not PID 1 for a parent."""
    pid_file = tmp_path / "pid"
    script = (
        "import os, pathlib, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # a quiet command that ignores TERM
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "while True: time.sleep(0.2)\n"
    )
    agent = AgentProcess(["run", "--", sys.executable, "-c", script], agent_env)
    wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", timeout_s=30)
    child = int(pid_file.read_text())
    assert _alive(child)
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=10)
    wait_until(lambda: not _alive(child), timeout_s=10)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_run_starts_the_command_whatever_comet_answers_at_attach(
    server: CometStandIn, agent_env: dict[str, str], tmp_path: Path, status: int
) -> None:
    """4xx at attach: the command runs, its exit code comes back, one warning, an archive."""
    server.fail("add-run", status=status, times=50, body={"msg": "no", "sdk_error_code": 1})
    env = {**agent_env, "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline")}
    started = time.monotonic()
    done = run_agent(
        ["run", "--", sys.executable, "-c", "print('trained'); raise SystemExit(3)"],
        env,
        timeout_s=60,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "trained" in done.stdout
    assert time.monotonic() - started < 30
    assert done.stderr.count('"experiment.join_refused"') == 1
    assert "upload it with: comet-agent upload" in done.stderr
    assert list((tmp_path / "offline").glob("*.zip"))
    assert [r.route for r in server.requests if r.status == 200] == []


def test_start_creating_during_an_outage_samples_from_the_start(
    server: CometStandIn, agent_env: dict[str, str]
) -> None:
    """Comet down at start: sampling begins at once; the experiment is made when Comet is back,
    and the samples of the outage arrive, stamped when they were taken."""
    server.answer_keepalive(FAST)
    server.outage(mode="drop")
    env = {**agent_env, "COMET_SYSTEM_CPU_INTERVAL": "1"}
    began_ms = int(time.time() * 1000)
    agent = AgentProcess(["start"], env)
    agent.wait_for("agent.ready", timeout_s=30)
    time.sleep(6)  # ready and sampling while nothing can be created
    assert agent.proc.poll() is None, "start must not exit while Comet is down"
    server.recover()
    wait_until(lambda: server.count("add-cpu-metrics") >= 3, timeout_s=60)
    assert agent.stop() == 0
    assert len(server.created()) == 1
    stamps = [int(r.body["timestamp"]) for r in server.received("add-cpu-metrics")]  # type: ignore[index]
    assert min(stamps) < began_ms + 6_000, "a sample taken during the outage was delivered"


def test_a_start_killed_before_comet_answered_has_its_experiment_made_at_the_next_start(
    server: CometStandIn, agent_env: dict[str, str]
) -> None:
    """kill -9 during an outage, then a restart on the same state directory: the first run's
    experiment is made before its samples are sent (none refused, none lost to 400s)."""
    server.answer_keepalive(FAST)
    server.outage(mode="drop")
    env = {**agent_env, "COMET_SYSTEM_CPU_INTERVAL": "1"}
    first = AgentProcess(["start"], env)
    first_key = str(first.wait_for("agent.ready", timeout_s=30)["experiment_key"])
    first.wait_for("sample.queued", timeout_s=30, count=3)
    first.kill()
    server.recover()
    second = AgentProcess(["start"], env)
    second_key = str(second.wait_for("agent.ready", timeout_s=30)["experiment_key"])
    wait_until(
        lambda: (
            {r.experiment_key for r in server.received("add-cpu-metrics")}
            >= {first_key, second_key}
        ),
        timeout_s=60,
    )
    assert second.stop() == 0
    assert set(server.created()) == {first_key, second_key}
    assert server.violations == []


def test_a_command_shorter_than_comets_answer_is_still_delivered_online(
    server: CometStandIn, agent_env: dict[str, str], tmp_path: Path
) -> None:
    """The command ends before the handshake's answer: the stop waits for it (briefly) and
    sends online, instead of writing an archive."""
    server.fail("add-run", mode="slow", delay_s=0.8)
    env = {**agent_env, "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline")}
    done = run_agent(["run", "--", sys.executable, "-c", "print('quick')"], env, timeout_s=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(server.created()) == 1
    assert [line["output"] for line in server.output_lines()] == ["quick\n"]
    assert not list((tmp_path / "offline").glob("*.zip"))
