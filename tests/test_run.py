"""The run wrapper's process side: real children, real pipes, real signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import agent.wrap.process
from agent.api.client import CometClient
from agent.config import Settings
from agent.errors import UsageError
from agent.message import Message
from agent.wrap.output import OutputStream
from agent.wrap.process import QUIET_SDK, ChildExit, child_env, run_child
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, ROOT, clean_env, wait_until

PY = sys.executable
KEY = "0123456789abcdef0123456789abcdef"

# A grandchild in the child's process group: on SIGTERM or SIGHUP it writes the signal's name.
GRANDCHILD = """
import pathlib, signal, sys, time
marker, ready = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def on_signal(signum, frame):
    marker.write_text(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGHUP, on_signal)
ready.write_text("ready")
time.sleep(30)
"""
# The child: starts the grandchild (same group) and waits; the signal's default action kills it.
CHILD = """
import subprocess, sys
subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2], sys.argv[3]]).wait()
"""
# Counts SIGINTs and exits after the second one.
TWO_INTERRUPTS = """
import pathlib, signal, sys, time
log = pathlib.Path(sys.argv[1])
count = 0
def on_int(signum, frame):
    global count
    count += 1
    log.write_text(f"int {count}")
signal.signal(signal.SIGINT, on_int)
log.write_text("ready")
deadline = time.monotonic() + 30
while count < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
sys.exit(0 if count == 2 else 1)
"""
# Reports its COMET_* environment and every readable command line on the machine.
SDK_HOOK = str(Path(agent.wrap.process.__file__).with_name("sdk_hook"))
REPORT_ENV = """
import json, os, pathlib, sys
lines = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        lines[pid] = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        pass
env = {k: v for k, v in os.environ.items() if k.startswith(("COMET_", "NOTIFY", "WATCHDOG"))}
everything = " ".join(f"{k}={v}" for k, v in os.environ.items())
pathlib.Path(sys.argv[1]).write_text(json.dumps({"env": env, "cmdlines": lines, "all": everything}))
"""


def _run(argv: Sequence[str], tmp_path: Path, **kwargs: object) -> tuple[ChildExit, bytes, bytes]:
    """Run in this process, the terminal side going to files; return result, stdout, stderr."""
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        result = run_child(argv, env=os.environ, stdout=out, stderr=err, **kwargs)  # type: ignore[arg-type]
    return result, (tmp_path / "out").read_bytes(), (tmp_path / "err").read_bytes()


def _driver(tmp_path: Path, argv: Sequence[str], *options: str) -> list[str]:
    """The test driver's command line: run_child on `argv` in a process of its own."""
    return [PY, "-m", "tests.run_driver", *options, str(tmp_path / "result.json"), "--", *argv]


def _driver_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return clean_env(tmp_path, {"PYTHONPATH": str(ROOT), **(extra or {})})


@pytest.mark.parametrize(("code", "expected"), [(0, 0), (3, 3)])
def test_exit_code_is_the_commands(tmp_path: Path, code: int, expected: int) -> None:
    """The command's own status comes back, with its output passed through."""
    result, out, err = _run([PY, "-c", f"print('hi'); raise SystemExit({code})"], tmp_path)
    assert (result.exit_code, result.signal, result.started, result.error) == (
        expected,
        None,
        True,
        None,
    )
    assert (out, err) == (b"hi\n", b"")
    assert 0 < result.wall_s < 30


def test_killed_by_a_signal_is_128_plus_n(tmp_path: Path) -> None:
    """A command killed by SIGKILL ends with 137 and signal 9, as a shell reports it."""
    result, _, _ = _run([PY, "-c", "import os; os.kill(os.getpid(), 9)"], tmp_path)
    assert (result.exit_code, result.signal) == (137, 9)
    assert result.oom_killed is None  # no counter given


def test_oom_kill_is_sigkill_plus_a_counted_kill(tmp_path: Path) -> None:
    """oom_killed needs both SIGKILL and a rise of the cgroup's OOM counter."""
    counts = iter([4, 5])
    result, _, _ = _run(
        [PY, "-c", "import os; os.kill(os.getpid(), 9)"],
        tmp_path,
        oom_kill_count=lambda: next(counts),
    )
    assert (result.oom_killed, result.oom_kills) == (True, 1)
    counts = iter([4, 5])  # a worker was killed, the command itself exited
    result, _, _ = _run([PY, "-c", "pass"], tmp_path, oom_kill_count=lambda: next(counts))
    assert (result.exit_code, result.oom_killed, result.oom_kills) == (0, False, 1)
    result, _, _ = _run([PY, "-c", "pass"], tmp_path, oom_kill_count=lambda: None)
    assert (result.oom_killed, result.oom_kills) == (None, None)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_reaches_the_grandchild(tmp_path: Path, signum: signal.Signals) -> None:
    """A signal to the wrapper goes to the command's whole process group."""
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "grandchild.py").write_text(GRANDCHILD)
    marker, ready = tmp_path / "marker", tmp_path / "ready"
    argv = [
        PY,
        str(tmp_path / "child.py"),
        str(tmp_path / "grandchild.py"),
        str(marker),
        str(ready),
    ]
    with subprocess.Popen(
        _driver(tmp_path, argv),
        env=_driver_env(tmp_path),
        stdin=subprocess.DEVNULL,
    ) as wrapper:
        wait_until(ready.exists, timeout_s=20)
        wrapper.send_signal(signum)
        assert wrapper.wait(timeout=20) == 128 + signum
    assert marker.read_text() == signum.name
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["exit_code"], result["signal"], result["restored"]) == (
        128 + signum,
        signum,
        True,
    )


def test_second_interrupt_is_forwarded_too(tmp_path: Path) -> None:
    """Two Ctrl-C's both reach the command, which decides when to stop; the wrapper waits."""
    (tmp_path / "two.py").write_text(TWO_INTERRUPTS)
    log = tmp_path / "log"
    with subprocess.Popen(
        _driver(tmp_path, [PY, str(tmp_path / "two.py"), str(log)]),
        env=_driver_env(tmp_path),
        stdin=subprocess.DEVNULL,
    ) as wrapper:
        wait_until(lambda: log.exists() and log.read_text() == "ready", timeout_s=20)
        wrapper.send_signal(signal.SIGINT)
        wait_until(lambda: log.read_text() == "int 1", timeout_s=10)
        assert wrapper.poll() is None
        wrapper.send_signal(signal.SIGINT)
        assert wrapper.wait(timeout=20) == 0
    assert log.read_text() == "int 2"


def test_stdin_passes_through(tmp_path: Path) -> None:
    """The command reads the wrapper's stdin: `echo ... | comet-agent run -- cat`."""
    done = subprocess.run(
        _driver(tmp_path, ["cat"]),
        env=_driver_env(tmp_path),
        input=b"hello\nworld\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hello\nworld\n", b"")


def test_command_not_found_is_127(tmp_path: Path) -> None:
    """One line naming the command, as a shell says it; nothing started."""
    result, out, err = _run(["nosuchcmd-zz9"], tmp_path)
    assert (result.exit_code, result.started) == (127, False)
    assert err == b"comet-agent: nosuchcmd-zz9: command not found\n"
    assert result.error == "comet-agent: nosuchcmd-zz9: command not found"
    assert out == b""
    missing = str(tmp_path / "missing.sh")
    result, _, err = _run([missing], tmp_path)
    assert (result.exit_code, err) == (
        127,
        f"comet-agent: {missing}: No such file or directory\n".encode(),
    )


def test_not_executable_is_126(tmp_path: Path) -> None:
    """A file without the x bit, or whose #! interpreter is missing, cannot start: 126."""
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result, _, err = _run([str(script)], tmp_path)
    assert (result.exit_code, err) == (126, f"comet-agent: {script}: Permission denied\n".encode())
    script.write_text("#!/nonexistent/python\n")
    script.chmod(0o755)
    result, _, err = _run([str(script)], tmp_path)
    assert result.exit_code == 126
    assert err == f"comet-agent: {script}: bad interpreter: No such file or directory\n".encode()


def test_empty_command_is_a_usage_error() -> None:
    """`comet-agent run --` with nothing after it says what to write."""
    with pytest.raises(UsageError, match="put it after --"):
        run_child([], env=os.environ)


def test_child_env_passes_the_experiment_not_the_key() -> None:
    """Exactly these variables change; a key from a file never enters the environment."""
    base = {
        "PATH": "/usr/bin",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "60000000",
        "WATCHDOG_PID": "1",
        "COMET_WORKSPACE": "old",
    }
    settings = Settings(
        api_key=CANARY_KEY, url_override="http://127.0.0.1:9/", workspace="ws", project_name="proj"
    )
    assert child_env(base, settings, KEY) == {
        "PATH": "/usr/bin",
        "COMET_EXPERIMENT_KEY": KEY,
        "COMET_URL_OVERRIDE": "http://127.0.0.1:9/",
        "COMET_WORKSPACE": "ws",
        "COMET_PROJECT_NAME": "proj",
        **QUIET_SDK,
        "COMET_AGENT_SDK_KEY": KEY,
        "PYTHONPATH": SDK_HOOK,
    }
    inherited = child_env({"COMET_API_KEY": CANARY_KEY}, Settings(quiet_sdk=False), None)
    assert inherited == {"COMET_API_KEY": CANARY_KEY, "COMET_URL_OVERRIDE": Settings().url_override}


def test_child_env_tells_the_sdk_what_the_agent_sends_unless_the_user_said() -> None:
    """The SDK's own switches, with the values it parses; a switch the user set stays theirs."""
    user = {"COMET_AUTO_LOG_ENV_GPU": "true", "PYTHONPATH": "/mine"}
    env = child_env(user, Settings(), KEY)
    assert env["COMET_AUTO_LOG_OUTPUT_LOGGER"] == ""  # "false" would mean simple capture
    assert env["COMET_AUTO_LOG_ENV_GPU"] == "true"
    assert env["COMET_AUTO_LOG_GIT_PATCH"] == "false"
    assert env["PYTHONPATH"] == f"{SDK_HOOK}:/mine"
    assert not set(QUIET_SDK) & set(child_env({}, Settings(quiet_sdk=False), KEY))


def test_offline_child_env_keeps_the_sdk_offline(tmp_path: Path) -> None:
    """Offline: no server address, start() offline, archives next to the agent's."""
    settings = Settings(offline=True, offline_directory=tmp_path)
    env = child_env({}, settings, KEY, offline=True)
    assert "COMET_URL_OVERRIDE" not in env
    assert env["COMET_START_ONLINE"] == "false"
    assert env["COMET_OFFLINE_DIRECTORY"] == str(tmp_path)
    assert env["COMET_EXPERIMENT_KEY"] == KEY
    assert env["COMET_AGENT_SDK_OFFLINE"] == "1"  # the hook makes Experiment() offline


def test_child_sees_the_experiment_and_no_process_shows_the_key(tmp_path: Path) -> None:
    """COMET_EXPERIMENT_KEY reaches the command; the canary is in no argv and not in its env."""
    key_file = tmp_path / "api-key"
    key_file.write_text(CANARY_KEY + "\n")
    (tmp_path / "report.py").write_text(REPORT_ENV)
    env = _driver_env(
        tmp_path,
        {
            "COMET_AGENT_API_KEY_FILE": str(key_file),
            "COMET_URL_OVERRIDE": "http://127.0.0.1:9/",
            "COMET_PROJECT_NAME": "proj",
            "NOTIFY_SOCKET": "/run/systemd/notify",
        },
    )
    report = tmp_path / "report.json"
    done = subprocess.run(
        _driver(tmp_path, [PY, str(tmp_path / "report.py"), str(report)], "--experiment-key", KEY),
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(report.read_text())
    assert seen["env"] == {
        "COMET_AGENT_API_KEY_FILE": str(key_file),
        "COMET_EXPERIMENT_KEY": KEY,
        "COMET_URL_OVERRIDE": "http://127.0.0.1:9/",
        "COMET_PROJECT_NAME": "proj",
        "COMET_AGENT_SDK_KEY": KEY,
        **QUIET_SDK,
    }
    assert len(seen["cmdlines"]) >= 3  # at least pytest, the wrapper and the command
    assert all(CANARY_KEY not in line for line in seen["cmdlines"].values())
    assert CANARY_KEY not in seen["all"]
    assert CANARY_KEY not in done.stdout.decode() + done.stderr.decode()


def test_mixed_binary_and_text_pass_through_byte_for_byte(tmp_path: Path) -> None:
    """The terminal side gets exactly the bytes written, and so does the capture."""
    blob = (
        bytes(range(256)) * 40
        + b"epoch 1\r\n 10%|#\r 50%|#####\r100%|##########\n\xff\xfe no newline"
        + random.Random(7).randbytes(300_000)
    )
    err_blob = b"warn: \xe2\x82\xac\n" * 1000
    (tmp_path / "blob").write_bytes(blob)
    (tmp_path / "err_blob").write_bytes(err_blob)
    writer = (
        "import sys\n"
        f"data = open({str(tmp_path / 'blob')!r}, 'rb').read()\n"
        f"err = open({str(tmp_path / 'err_blob')!r}, 'rb').read()\n"
        "i = n = 0\n"
        "while i < len(data):\n"
        "    n = n % 9000 + 1237\n"
        "    sys.stdout.buffer.write(data[i:i + n]); sys.stdout.buffer.flush()\n"
        "    sys.stderr.buffer.write(err[i // 30:(i + n) // 30]); sys.stderr.buffer.flush()\n"
        "    i += n\n"
        "sys.stderr.buffer.write(err[len(data) // 30:])\n"
    )
    captured: dict[bool, list[bytes]] = {False: [], True: []}
    result, out, err = _run(
        [PY, "-c", writer], tmp_path, on_output=lambda c, e: captured[e].append(c)
    )
    assert result.exit_code == 0
    assert out == blob
    assert err == err_blob
    assert (b"".join(captured[False]), b"".join(captured[True])) == (blob, err_blob)


def test_capture_failure_never_stops_the_passthrough(tmp_path: Path) -> None:
    """on_output raising is logged once; every byte still reaches the terminal side."""
    calls = 0

    def broken(chunk: bytes, is_stderr: bool) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("capture bug")

    writer = "import sys, time\nfor i in range(5):\n    print(i, flush=True); time.sleep(0.05)\n"
    with capture_logs() as logs:
        result, out, _ = _run([PY, "-c", writer], tmp_path, on_output=broken)
    assert (result.exit_code, out) == (0, b"0\n1\n2\n3\n4\n")
    assert calls >= 2
    assert [e["event"] for e in logs] == ["run.capture_failed"]
    assert logs[0]["error"] == "RuntimeError('capture bug')"


def test_pty_gives_the_command_a_terminal(tmp_path: Path) -> None:
    """With use_pty both streams are one terminal; its bytes arrive as written (no \\r added)."""
    code = (
        "import sys; print(sys.stdout.isatty(), sys.stderr.isatty()); print('e', file=sys.stderr)"
    )
    result, out, err = _run([PY, "-c", code], tmp_path, use_pty=True)
    assert result.exit_code == 0
    assert out == b"True True\ne\n"
    assert err == b""


def test_pipes_without_pty_are_not_terminals(tmp_path: Path) -> None:
    """Without use_pty the command sees pipes, as under `| tee`."""
    result, out, _ = _run([PY, "-c", "import sys; print(sys.stdout.isatty())"], tmp_path)
    assert (result.exit_code, out) == (0, b"False\n")


def test_leftover_grandchild_does_not_hold_the_wrapper(tmp_path: Path) -> None:
    """A background process keeping the pipe open delays the return by eof_timeout_s only."""
    pids: list[int] = []
    begun = time.monotonic()
    try:
        result, _, _ = _run(
            [PY, "-c", "import subprocess; subprocess.Popen(['sleep', '30'])"],
            tmp_path,
            on_start=pids.append,
            eof_timeout_s=0.2,
        )
    finally:
        if pids:
            os.killpg(pids[0], signal.SIGKILL)
    assert result.exit_code == 0
    assert time.monotonic() - begun < 10


def test_handlers_are_restored(tmp_path: Path) -> None:
    """After the run, SIGINT and SIGTERM behave as before it."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    _run([PY, "-c", "pass"], tmp_path)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_wired_to_the_stand_in(tmp_path: Path, server: CometStandIn) -> None:
    """A real child's output reaches Comet's Log Output in order, as wire §3.6 describes it."""
    writer = "import sys\nprint('epoch 1 loss 0.3')\nprint('warn', file=sys.stderr)\n"
    writer += "print('end', end='')"
    with CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=5) as client:

        def put(messages: Sequence[Message]) -> None:
            for msg in messages:
                client.call(msg.endpoint, msg.body, experiment_key=msg.experiment_key)

        with OutputStream(put, KEY, flush_interval_s=60) as stream:
            result, _, _ = _run(
                [PY, "-c", writer], tmp_path, on_output=lambda c, e: stream.feed(c, stderr=e)
            )
    assert result.exit_code == 0
    items = sorted(server.output_lines(), key=lambda i: int(i["offset"]))  # type: ignore[call-overload]
    assert [i["offset"] for i in items] == [0, 1, 2]
    # the two streams race each other; the unfinished "end" is sent at close, so it is last
    assert {(i["stderr"], i["output"]) for i in items} == {
        (False, "epoch 1 loss 0.3\n"),
        (True, "warn\n"),
        (False, "end"),
    }
    assert (items[2]["stderr"], items[2]["output"]) == (False, "end")
