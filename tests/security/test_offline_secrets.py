"""Offline with a key set: archives, a partial directory left by kill -9, upload, report.

Bar: not one 12-character piece of the canary key in a zip member, in the
partial directory a killed run leaves, in the report's HTML, in upload's own
outbox (with its -wal and -shm) or in `uploaded/`, nor in the logs of `run`,
`start`, `upload` and `report` (both formats, DEBUG), although the server
echoes the key in the errors it gives the upload.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, run_agent, wait_until
from tests.security.leaks import leaks_in, tree_leaks
from tests.security.test_start_secrets import ECHO


def _has_messages(offline: Path) -> bool:
    return any(p.stat().st_size > 0 for p in offline.glob("*.partial/messages.json"))


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_archives_upload_and_report_hold_no_key(
    server: CometStandIn, env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    """A finished and a killed offline run, uploaded through echoing errors, then drawn."""
    offline, state = tmp_path / "offline", tmp_path / "state"
    run_env = {
        **env,
        "COMET_OFFLINE": "true",  # offline although the key is set: it is in memory all along
        "COMET_OFFLINE_DIRECTORY": str(offline),
        "COMET_AGENT_STATE_DIRECTORY": str(state),
        "COMET_AGENT_LOG_LEVEL": "debug",
        "COMET_AGENT_LOG_FORMAT": fmt,
        "COMET_SYSTEM_CPU_INTERVAL": "1",
    }
    logs: list[str] = []
    done = run_agent(["run", "--", sys.executable, "-c", "print('epoch 1')"], run_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    logs.append(done.stdout + done.stderr)
    killed = AgentProcess(["start"], run_env, cwd=tmp_path)
    wait_until(lambda: _has_messages(offline), timeout_s=30)
    killed.kill()
    logs.append(killed.stdout + killed.stderr)
    partial = list(offline.glob("*.partial"))
    assert len(partial) == 1
    assert tree_leaks(offline) == {}  # the zip's members and the partial directory's files

    zips = sorted(offline.glob("*.zip"))
    report = run_agent(["report", str(zips[0]), "-o", str(tmp_path / "r.html")], run_env)
    assert report.returncode == 0, report.stderr
    logs.append(report.stdout + report.stderr)
    assert "epoch 1" in (tmp_path / "r.html").read_text()

    server.fail("log-metric-batch", status=503, body=ECHO, times=2)
    server.fail("set-system-details", status=503, body=ECHO)
    upload_env = {k: v for k, v in run_env.items() if k != "COMET_OFFLINE"}
    upload_env["COMET_AGENT_BACKOFF_MAX_S"] = "1"
    upload = run_agent(["upload"], upload_env, cwd=tmp_path, timeout_s=120)
    assert upload.returncode == 0, upload.stderr
    logs.append(upload.stdout + upload.stderr)
    assert "uploaded" in upload.stdout

    for text in logs:
        assert leaks_in(text) == []
    assert leaks_in((tmp_path / "r.html").read_bytes()) == []
    assert sorted(p.name for p in (offline / "uploaded").iterdir()) == sorted(
        [z.name for z in zips] + [partial[0].name.removesuffix(".partial") + ".zip"]
    )
    assert tree_leaks(offline) == {}
    assert (state / "upload-outbox.sqlite").exists()
    assert tree_leaks(state) == {}
    assert server.count("log-metric-batch", ok_only=False) >= 3  # the echoes were answered
    assert CANARY_KEY not in server.all_text()
