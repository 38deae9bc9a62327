"""The one-shot commands' output and logs: sysinfo, sample, api (a call and a dry run), status.

Bar: at DEBUG (every level at once) in JSON and console formats, with the key
set, not one 12-character piece of it in what these commands print; the
dry run shows the Authorization header as ***.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.comet_server import CometStandIn
from tests.helpers import run_agent
from tests.security.leaks import leaks_in

EXPERIMENT = "0123456789abcdef0123456789abcdef"
DRY_BODY = json.dumps(
    {
        "local_timestamp": 1_700_000_000_500,
        "offline": False,
        "projectName": "proj",
        "teamName": "ws",
        "libVersion": "0.1.0",
    }
)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_one_shot_commands_print_no_key(
    server: CometStandIn, env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    """sysinfo, sample (text and JSON), api, api --dry-run, status: no piece of the key."""
    env = {
        **env,
        "COMET_AGENT_LOG_LEVEL": "debug",
        "COMET_AGENT_LOG_FORMAT": fmt,
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
    }
    runs = {
        " ".join(args): run_agent(args, env, cwd=tmp_path)
        for args in (
            ["sysinfo"],
            ["sysinfo", "--json"],
            ["sample"],
            ["sample", "--json"],
            ["api", "keep-alive", "--experiment-key", EXPERIMENT],
            ["api", "add-run", "--dry-run", "--experiment-key", EXPERIMENT, "--body", DRY_BODY],
            ["status", "--json"],
        )
    }
    for name, done in runs.items():
        assert leaks_in(done.stdout + done.stderr) == [], name
    failed = {n: d.stderr[-500:] for n, d in runs.items() if d.returncode}
    assert list(failed) == ["status --json"], failed  # no agent has run here: exit 1
    dry = json.loads(next(d.stdout for n, d in runs.items() if "--dry-run" in n))
    assert dry["headers"]["Authorization"] == "***"
    assert dry["json"]["apiKey"] == "***"
    assert server.count("keep-alive") == 1
