"""A stderr nobody reads: logging fails, work does not; before ready, start exits for a restart."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fakes.comet_server import CometStandIn
from tests.helpers import agent_argv


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
