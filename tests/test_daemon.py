"""`comet-agent start` as a real subprocess against the loopback stand-in.

Each test states its bar. Samples the agent took are read from its own
``sample.queued`` DEBUG lines (written after the outbox write) and compared
with what the stand-in accepted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, gaps_s
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, run_agent, wait_until

KEY = "0123456789abcdef0123456789abcdef"
FAST = {
    "isAliveBeatDurationMillis": 1000,
    "cpuMonitorIntervalMillis": 1000,
    "gpuMonitorIntervalMillis": 1000,
}


@pytest.fixture(name="agent_env")
def _agent_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The stand-in's environment, with debug logs, a quick back-off and a private state dir."""
    return {
        **env,
        "COMET_AGENT_LOG_LEVEL": "debug",
        "COMET_AGENT_BACKOFF_MAX_S": "1",
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_AGENT_GIT_METADATA": "false",
        "COMET_AGENT_GIT_PATCH": "false",
    }


def _cpu_stamps(server: CometStandIn, key: str | None = None) -> list[int]:
    return [
        int(r.body["timestamp"])
        for r in server.received("add-cpu-metrics")  # type: ignore[index, call-overload]
        if key is None or r.experiment_key == key
    ]


def test_keepalive_answers_set_the_sample_spacing(
    server: CometStandIn, agent_env: dict[str, str]
) -> None:
    """Answers of 1 s then 3 s: samples come 1 s apart, then 3 s apart."""
    server.answer_keepalive(*[FAST] * 4, {**FAST, "cpuMonitorIntervalMillis": 3000})
    agent = AgentProcess(["start"], agent_env)
    agent.wait_for("agent.ready")
    wait_until(lambda: len(agent.samples()) >= 10, timeout_s=40)
    gaps = gaps_s(agent.samples())  # before the stop, whose last sample comes early
    assert agent.stop() == 0
    assert all(0.7 < g < 1.4 for g in gaps[:3]), gaps
    assert all(2.6 < g < 3.6 for g in gaps[-2:]), gaps
    changes = [e["interval_s"] for e in agent.named("schedule.changed") if e["job"] == "sample.cpu"]
    assert changes == [1.0, 3.0]


def test_garbage_intervals_are_clamped_or_ignored(
    server: CometStandIn, agent_env: dict[str, str], tmp_path: Path
) -> None:
    """A 50 ms interval is clamped to 1 s, a negative beat and a string are ignored, once each."""
    server.answer_keepalive(
        {
            "isAliveBeatDurationMillis": -5,
            "cpuMonitorIntervalMillis": 50,
            "gpuMonitorIntervalMillis": "often",
        }
    )
    agent = AgentProcess(["start"], agent_env)
    agent.wait_for("agent.ready")
    wait_until(lambda: len(agent.samples()) >= 3, timeout_s=20)
    status = run_agent(["status", "--json"], agent_env)
    assert agent.stop() == 0
    clamped = agent.named("keepalive.clamped")
    assert [(e["field"], e["applied_s"]) for e in clamped] == [("cpuMonitorIntervalMillis", 1.0)]
    ignored = {e["field"] for e in agent.named("keepalive.ignored")}
    assert ignored == {"isAliveBeatDurationMillis", "gpuMonitorIntervalMillis"}
    intervals = json.loads(status.stdout)["snapshot"]["intervals"]
    assert intervals["cpu_s"] == 1.0
    assert intervals["cpu_source"] == "server-clamped"
    assert intervals["beat_s"] == 10.0


def test_outage_loses_nothing_and_keeps_order(
    server: CometStandIn, agent_env: dict[str, str]
) -> None:
    """503 for 10 s, then dropped connections for 10 s: every sample arrives after, in order,
    with the timestamp it was taken at."""
    server.answer_keepalive(FAST)
    agent = AgentProcess(["start"], agent_env)
    agent.wait_for("agent.ready")
    wait_until(lambda: len(_cpu_stamps(server)) >= 2, timeout_s=20)
    server.outage(status=503)
    time.sleep(10)
    server.outage(mode="drop")
    time.sleep(10)
    server.recover()
    taken_during = len(agent.samples())
    wait_until(lambda: len(_cpu_stamps(server)) >= taken_during, timeout_s=30)
    assert agent.stop() == 0
    taken = agent.samples()
    assert _cpu_stamps(server) == taken  # all, once, in order, original stamps
    batch = [
        int(i["timestamp"])
        for i in server.metric_items()  # type: ignore[call-overload]
        if i["metricName"] == "sys.cpu.percent.avg"
    ]
    assert batch == taken
    assert len(taken) >= 20


def test_kill_9_during_outage_then_restart_loses_nothing(
    server: CometStandIn, agent_env: dict[str, str]
) -> None:
    """kill -9 while Comet is down; the next start sends what the first one had queued."""
    server.answer_keepalive(FAST)
    first = AgentProcess(["start"], agent_env)
    first.wait_for("agent.ready")
    key = str(first.named("agent.ready")[0]["experiment_key"])
    wait_until(lambda: server.count("keep-alive") >= 1)  # the 1 s answer, before the outage
    server.outage(status=503)
    wait_until(lambda: len(first.samples()) >= 5, timeout_s=20)
    first.kill()
    taken = first.samples()
    server.recover()
    second = AgentProcess(["start"], agent_env)
    second.wait_for("agent.ready")
    wait_until(lambda: set(taken) <= set(_cpu_stamps(server, key)), timeout_s=30)
    assert second.stop() == 0
    arrived = _cpu_stamps(server, key)
    assert set(taken) <= set(arrived)
    # A sample written but not yet logged when the kill came arrives too: at most that one.
    assert len(set(arrived) - set(taken)) <= 1
    assert arrived == sorted(arrived)


def test_broken_keepalive_answers_do_not_crash(
    server: CometStandIn, agent_env: dict[str, str]
) -> None:
    """HTML, cut and wrong-typed keep-alive answers: logged, intervals hold, samples flow."""
    server.answer_keepalive(FAST)
    agent = AgentProcess(["start"], agent_env)
    agent.wait_for("agent.ready")
    wait_until(lambda: server.count("keep-alive") >= 1)
    server.fail("keep-alive", mode="html")
    server.fail("keep-alive", mode="cut")
    server.fail("keep-alive", mode="garbage-json")
    server.fail("keep-alive", status=200, body=["not", "an", "object"])
    wait_until(lambda: server.count("keep-alive", ok_only=False) >= 7, timeout_s=20)
    before = len(_cpu_stamps(server))
    wait_until(lambda: len(_cpu_stamps(server)) >= before + 2, timeout_s=10)
    assert agent.stop() == 0
    assert agent.named("job.failed")  # the failed beats, one line each kind
    assert "Traceback" not in agent.stderr


def test_status_while_running_and_after(server: CometStandIn, agent_env: dict[str, str]) -> None:
    """status: healthy with the key and the server's intervals; after a clean stop, "stopped
    cleanly at ..." and exit 0; after a kill -9, not running and exit 1."""
    server.answer_keepalive(FAST)
    agent = AgentProcess(["start"], agent_env)
    ready = agent.wait_for("agent.ready")
    wait_until(lambda: server.count("keep-alive") >= 2)
    wait_until(lambda: "server" in run_agent(["status"], agent_env).stdout, timeout_s=15)
    shown = run_agent(["status"], agent_env)
    assert shown.returncode == 0, shown.stdout
    assert str(ready["experiment_key"]) in shown.stdout
    assert "cpu/ram/load 1 s (server)" in shown.stdout
    assert "healthy" in shown.stdout
    assert agent.stop() == 0
    after = run_agent(["status"], agent_env)
    assert after.returncode == 0, after.stdout
    assert "stopped cleanly at " in after.stdout and "UNHEALTHY" not in after.stdout
    killed = AgentProcess(["start"], agent_env)
    killed.wait_for("agent.ready")
    wait_until(lambda: "running for" in run_agent(["status"], agent_env).stdout, timeout_s=20)
    killed.proc.kill()
    killed.proc.wait(timeout=10)
    gone = run_agent(["status"], agent_env)
    assert gone.returncode == 1
    assert "did not stop cleanly" in gone.stdout


def test_second_signal_exits_at_once_and_keeps_the_rest(
    server: CometStandIn, agent_env: dict[str, str]
) -> None:
    """SIGTERM during an outage flushes until the deadline; a second SIGTERM ends it at once;
    the next start delivers what was left."""
    server.answer_keepalive(FAST)
    env = {**agent_env, "COMET_AGENT_STOP_TIMEOUT_S": "60"}
    first = AgentProcess(["start"], env)
    first.wait_for("agent.ready")
    key = str(first.named("agent.ready")[0]["experiment_key"])
    # The first keep-alive must land before the outage, or the 1 s interval never arrives.
    wait_until(
        lambda: any(e["job"] == "sample.cpu" for e in first.named("schedule.changed")),
        timeout_s=20,
    )
    server.outage(status=503)
    wait_until(lambda: len(first.samples()) >= 3, timeout_s=20)
    first.signal(signal.SIGTERM)
    first.wait_for("agent.stopping")
    started = time.monotonic()
    first.signal(signal.SIGTERM)
    assert first.wait(timeout_s=10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5
    taken = first.samples()
    server.recover()
    second = AgentProcess(["start"], env)
    second.wait_for("agent.ready")
    wait_until(lambda: set(taken) <= set(_cpu_stamps(server, key)), timeout_s=30)
    assert second.stop() == 0


def test_watch_pid_stops_the_agent(server: CometStandIn, agent_env: dict[str, str]) -> None:
    """--watch-pid: when the process exits the agent takes a last sample, flushes and exits 0."""
    server.answer_keepalive(FAST)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    agent = AgentProcess(["start", "--watch-pid", str(sleeper.pid)], agent_env)
    agent.wait_for("agent.ready")
    wait_until(lambda: server.count("add-cpu-metrics") >= 1)
    sleeper.kill()
    sleeper.wait()
    assert agent.wait(timeout_s=30) == 0
    assert agent.named("agent.watched_exit")
    ends = [r.body["endTimeMillis"] for r in server.received("set-start-end-time")]  # type: ignore[index]
    assert ends[-1] is not None


def test_attach_sends_no_start_or_end(server: CometStandIn, agent_env: dict[str, str]) -> None:
    """Attached to a given key, the agent creates nothing and leaves start/end times alone."""
    server.answer_keepalive(FAST)
    agent = AgentProcess(["start", "--experiment-key", KEY], agent_env)
    agent.wait_for("agent.ready")
    wait_until(lambda: server.count("add-cpu-metrics") >= 1)
    assert agent.stop() == 0
    assert server.count("create-experiment") == 0
    assert server.count("set-start-end-time") == 0
    assert server.received("keep-alive")[0].query["experimentKey"] == KEY
    assert {r.experiment_key for r in server.received("set-system-details")} == {KEY}


def test_notify_socket_sees_ready_status_stopping(
    server: CometStandIn, agent_env: dict[str, str], tmp_path: Path
) -> None:
    """Under systemd: READY=1 once attached, STATUS= with the backlog, STOPPING=1 at the end."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    try:
        agent = AgentProcess(["start"], {**agent_env, "NOTIFY_SOCKET": str(path)})
        messages = [sock.recv(4096).decode()]
        wait_until(lambda: server.count("add-cpu-metrics") >= 1)
        agent.stop()
        while "STOPPING=1" not in messages[-1]:
            messages.append(sock.recv(4096).decode())
    finally:
        sock.close()
    assert messages[0].startswith("READY=1\nSTATUS=attached to ")
    assert messages[-1] == "STOPPING=1"


@pytest.mark.parametrize(
    ("extra", "args", "code", "needle"),
    [
        ({}, ["--experiment-key", "not-a-key"], 2, "is not 32 to 50 letters and digits"),
        ({"COMET_API_KEY": "WRONGkeyWRONGkeyWRONGkey0"}, [], 1, "rejected the API key"),
    ],
)
def test_start_refuses_bad_setups(
    server: CometStandIn,
    agent_env: dict[str, str],
    extra: dict[str, str],
    args: list[str],
    code: int,
    needle: str,
) -> None:
    """A bad key, no workspace, a rejected API key: one line, the right exit status."""
    result = run_agent(["start", *args], {**agent_env, **extra}, timeout_s=60)
    assert result.returncode == code, result.stderr
    assert needle in result.stderr
    assert "WRONGkey" not in result.stderr


def test_unusable_state_dir_is_a_clear_error(agent_env: dict[str, str], tmp_path: Path) -> None:
    """A state directory that cannot be created: a settings error (exit 2, so systemd does not
    restart into it) naming it and the setting."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = run_agent(["start"], {**agent_env, "COMET_AGENT_STATE_DIRECTORY": str(blocker / "s")})
    assert result.returncode == 2
    assert f"cannot create the state directory {blocker / 's'}" in result.stderr


def test_corrupt_outbox_is_moved_aside(
    server: CometStandIn, agent_env: dict[str, str], tmp_path: Path
) -> None:
    """A corrupt outbox is kept under another name, reported, and the agent goes on."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "outbox.sqlite3").write_bytes(b"this is not a database" * 100)
    agent = AgentProcess(["start"], agent_env)
    agent.wait_for("agent.ready")
    wait_until(lambda: server.count("add-cpu-metrics") >= 1)
    assert agent.stop() == 0
    assert agent.named("outbox.corrupt")
    assert [p.name for p in state.iterdir() if ".corrupt-" in p.name]


def test_key_absent_from_output_files_and_argv(
    server: CometStandIn, agent_env: dict[str, str], tmp_path: Path
) -> None:
    """The canary key is in no log line, no state file and no process's command line."""
    server.answer_keepalive(FAST)
    agent = AgentProcess(["start"], agent_env)
    agent.wait_for("agent.ready")
    wait_until(lambda: server.count("add-cpu-metrics") >= 2)
    cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes()
    environ_visible = os.access(f"/proc/{agent.pid}/environ", os.R_OK)
    assert agent.stop() == 0
    assert CANARY_KEY.encode() not in cmdline
    assert environ_visible  # (it is there, by the user's choice of COMET_API_KEY)
    assert CANARY_KEY not in agent.stderr + agent.stdout
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert CANARY_KEY.encode() not in path.read_bytes(), path
    assert CANARY_KEY not in server.all_text()


def test_watch_pid_of_no_process_is_refused_before_anything_is_made(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    """`start --watch-pid` of a pid that does not exist: one line, exit 2, no state directory."""
    state = tmp_path / "never-made"
    gone = run_agent(
        ["start", "--watch-pid", "999999999"],
        {**agent_env, "COMET_AGENT_STATE_DIRECTORY": str(state)},
    )
    assert gone.returncode == 2
    [line] = gone.stderr.strip().splitlines()
    assert "--watch-pid 999999999: no such process" in line
    assert not state.exists()
