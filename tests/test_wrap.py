"""`comet-agent run -- COMMAND` end to end: real subprocesses, the loopback stand-in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, agent_argv, run_agent, wait_until

FAST = {
    "isAliveBeatDurationMillis": 1000,
    "cpuMonitorIntervalMillis": 1000,
    "gpuMonitorIntervalMillis": 1000,
}


@pytest.fixture(name="run_env")
def _run_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **env,
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_AGENT_GIT_METADATA": "false",
        "COMET_AGENT_GIT_PATCH": "false",
        "COMET_AGENT_STOP_TIMEOUT_S": "60",
    }


def _run(
    args: list[str], env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_agent(["run", "--", *args], env, timeout_s=timeout_s)


@pytest.mark.parametrize(("code", "expected"), [("0", 0), ("3", 3)])
def test_exit_status_is_the_commands(
    server: CometStandIn, run_env: dict[str, str], code: str, expected: int
) -> None:
    """The wrapper exits with the command's status; a failure is reported as a crash."""
    result = _run([sys.executable, "-c", f"import sys; sys.exit({code})"], run_env)
    assert result.returncode == expected, result.stderr
    exits = {r.body["key"]: r.body["value"] for r in server.received("log-other")}  # type: ignore[index]
    assert exits["comet_agent.exit_code"] == expected
    crashed = [r.body for r in server.received("update-status")]
    if expected:
        assert crashed == [
            {
                "isAlive": False,
                "error": "exit code 3",
                "hasCrashed": True,
                "experimentKey": crashed[0]["experimentKey"],
            }
        ]  # type: ignore[index]
    else:
        assert crashed == []
    ends = [r.body["endTimeMillis"] for r in server.received("set-start-end-time")]  # type: ignore[index]
    assert ends[0] is None
    assert ends[-1] is not None


def test_killed_by_signal_is_128_plus_n(server: CometStandIn, run_env: dict[str, str]) -> None:
    """A command killed by SIGKILL: exit 137, recorded as a crash with its signal."""
    result = _run(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], run_env
    )
    assert result.returncode == 128 + signal.SIGKILL
    others = {r.body["key"]: r.body["value"] for r in server.received("log-other")}  # type: ignore[index]
    assert others["comet_agent.signal"] == signal.SIGKILL
    assert server.received("update-status")[0].body["error"] == "killed by signal 9"  # type: ignore[index]


def test_sigterm_to_the_wrapper_reaches_the_command(
    server: CometStandIn, run_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGTERM to the wrapper goes to the command, whose own handler decides: exit 143."""
    marker = tmp_path / "got-term"
    script = (
        "import signal, sys, time, pathlib\n"
        "def bye(*_):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('term')\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [*agent_argv(), "run", "--", sys.executable, "-c", script],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert marker.read_text() == "term"


def test_not_found_creates_nothing(server: CometStandIn, run_env: dict[str, str]) -> None:
    """A command that does not exist: one line, exit 127, and no empty experiment."""
    result = _run(["no-such-command-xyz", "--flag"], run_env)
    assert result.returncode == 127
    assert result.stderr == "comet-agent: no-such-command-xyz: command not found\n"
    assert server.count(ok_only=False) == 0


def test_not_executable_is_126(
    server: CometStandIn, run_env: dict[str, str], tmp_path: Path
) -> None:
    """A file that cannot be executed: exit 126, as a shell would."""
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    result = _run([str(script)], run_env)
    assert result.returncode == 126
    assert str(script) in result.stderr


def test_command_is_never_shell_interpreted(
    server: CometStandIn, run_env: dict[str, str], tmp_path: Path
) -> None:
    """`run -- 'echo $HOME; touch pwned'` looks for a program of that name: 127, nothing run."""
    result = run_agent(["run", "--", f"echo $HOME; touch {tmp_path}/pwned"], run_env, cwd=tmp_path)
    assert result.returncode == 127
    assert not (tmp_path / "pwned").exists()


def test_child_gets_the_key_env_and_never_the_api_key_on_argv(
    server: CometStandIn, run_env: dict[str, str], tmp_path: Path
) -> None:
    """COMET_EXPERIMENT_KEY reaches the command; the API key is on no process's command line."""
    out = tmp_path / "seen"
    script = (
        "import os, pathlib, time\n"
        f"pathlib.Path({str(out)!r}).write_text(os.environ.get('COMET_EXPERIMENT_KEY', ''))\n"
        "time.sleep(2)\n"
    )
    agent = AgentProcess(["run", "--", sys.executable, "-c", script], run_env)
    wait_until(lambda: out.exists() and out.read_text() != "", timeout_s=30)
    cmdlines = []
    for pid in [agent.pid, *_children(agent.pid)]:
        try:
            cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            continue
    assert agent.wait(timeout_s=60) == 0
    key = out.read_text()
    assert server.created() == [key]  # the agent's chosen key, made to exist by add-run
    assert server.received("set-system-details")[0].experiment_key == key
    assert len(cmdlines) >= 2
    assert all(CANARY_KEY.encode() not in line for line in cmdlines)
    assert CANARY_KEY not in agent.stderr + agent.stdout


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # a thread that ended between the listing and the read
            continue
        found.extend(int(c) for c in children)
    return found


def test_a_million_lines_arrive_once_in_order(
    server: CometStandIn, run_env: dict[str, str]
) -> None:
    """1,000,000 lines: offsets 0..999,999 exactly once and in order at Comet, and the terminal
    side byte-identical to the command's own output."""
    n = 1_000_000
    script = f"import sys\nsys.stdout.write(''.join(f'{{i}}\\n' for i in range({n})))\n"
    started = time.monotonic()
    result = _run([sys.executable, "-c", script], run_env, timeout_s=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "".join(f"{i}\n" for i in range(n))
    lines = server.output_lines()
    assert [line["offset"] for line in lines] == list(range(n))
    assert all(line["output"] == f"{i}\n" for i, line in enumerate(lines))
    assert not any(line["stderr"] for line in lines)
    assert time.monotonic() - started < 200


def test_mixed_streams_keep_their_flags(server: CometStandIn, run_env: dict[str, str]) -> None:
    """stdout and stderr lines share one offset counter and keep their stderr flag."""
    script = (
        "import sys, time\n"
        "for i in range(20):\n"
        "    (sys.stderr if i % 3 == 0 else sys.stdout).write(f'{i}\\n')\n"
        "    (sys.stderr if i % 3 == 0 else sys.stdout).flush()\n"
        "    time.sleep(0.01)\n"
    )
    result = _run([sys.executable, "-c", script], run_env)
    assert result.returncode == 0
    lines = sorted(server.output_lines(), key=lambda line: int(line["offset"]))  # type: ignore[call-overload]
    assert [int(line["offset"]) for line in lines] == list(range(20))  # type: ignore[call-overload]
    # Two pipes, two readers: across streams the order is as the readers saw it (a loaded
    # machine may swap neighbours); within each stream it is the command's, and every flag holds.
    for err in (True, False):
        mine = [str(line["output"]) for line in lines if line["stderr"] is err]
        assert mine == [f"{i}\n" for i in range(20) if (i % 3 == 0) is err]
    assert result.stderr.count("\n") >= 7  # the command's stderr lines still reach the terminal


def test_stdin_passes_through(server: CometStandIn, run_env: dict[str, str]) -> None:
    """The command reads the wrapper's stdin."""
    result = run_agent(
        ["run", "--", sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
        run_env,
        input_text="hello\n",
    )
    assert result.returncode == 0
    assert result.stdout == "HELLO\n\n"


def test_unreachable_comet_falls_back_to_offline(run_env: dict[str, str], tmp_path: Path) -> None:
    """Comet down at start: the command still runs, recorded offline, with the upload hint."""
    env = {
        **run_env,
        "COMET_URL_OVERRIDE": "http://127.0.0.1:9/clientlib/",
        "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline"),
        "COMET_TIMEOUT_HTTP": "0.5",
    }
    env.pop("COMET_EXPERIMENT_KEY", None)
    started = time.monotonic()
    result = _run([sys.executable, "-c", "print('trained')"], env, timeout_s=120)
    assert result.returncode == 0
    assert result.stdout == "trained\n"
    assert "comet-agent upload" in result.stderr
    assert list((tmp_path / "offline").glob("*.zip"))
    assert time.monotonic() - started < 60
    assert os.environ.get("COMET_API_KEY") != CANARY_KEY


def test_a_run_beside_a_daemon_leaves_no_empty_runs_directory(
    server: CometStandIn, run_env: dict[str, str], tmp_path: Path
) -> None:
    """`run` next to a running `start` takes runs/<pid>; delivered in full, the directory goes."""
    daemon = AgentProcess(["start"], run_env)
    try:
        daemon.wait_for("agent.ready")
        result = _run([sys.executable, "-c", "print('hello')"], run_env)
        assert result.returncode == 0, result.stderr
        runs = tmp_path / "state" / "runs"
        assert not runs.exists() or list(runs.iterdir()) == []
    finally:
        assert daemon.stop() == 0
