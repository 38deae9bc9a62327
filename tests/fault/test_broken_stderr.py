"""A stderr nobody reads: logging fails, work does not; before ready, start exits for a restart."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.fakes.comet_server import CometStandIn
from tests.fault.schedule import FAST
from tests.helpers import agent_argv, wait_until


def test_start_exits_non_zero_when_stderr_is_gone_before_ready(
    agent_env: dict[str, str], server: CometStandIn, tmp_path: Path
) -> None:
    """The log's reader is gone at start: `start` attaches, then exits 1 (systemd restarts it)."""
    proc = subprocess.Popen(
        [*agent_argv(), "start"],
        env=agent_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.close()  # the reader goes away: every log write is EPIPE
    try:
        code = proc.wait(timeout=60)  # was: running forever, logging into the void
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 1


def test_sending_goes_on_after_stderr_breaks(
    agent_env: dict[str, str], server: CometStandIn
) -> None:
    """Ready, then the log's reader goes away (debug: a line every pass): samples still arrive."""
    server.answer_keepalive(FAST)
    proc = subprocess.Popen(
        [*agent_argv(), "start"],
        env=agent_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if '"agent.ready"' in line:
                break
        wait_until(lambda: server.count("add-cpu-metrics") >= 1, timeout_s=30)
        proc.stderr.close()
        wait_until(lambda: server.count("add-cpu-metrics") >= 2, timeout_s=30)  # the 1 s answer
        before = server.count("add-cpu-metrics")
        # was: the sender thread died at its first log line; the process stayed up, mute
        wait_until(lambda: server.count("add-cpu-metrics") >= before + 3, timeout_s=30)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
