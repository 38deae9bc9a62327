"""`comet-agent run` starts the command before it loads what only sampling needs (issue 5).

What was imported is read at the moment the command is spawned, through an
audit hook on ``subprocess.Popen`` in a fresh interpreter that runs the real
``main()``: nothing is patched. Offline, not even requests is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fakes.comet_server import CometStandIn

LATE = (
    "structlog",
    "apscheduler",
    "psutil",
    "pynvml",
    "agent.lifecycle.facts",
    "agent.collect.system",
)
PROBE = textwrap.dedent("""
    import json, sys
    late = json.loads(sys.argv[1])
    seen = []

    def hook(event, args):
        if event == "subprocess.Popen" and not seen:
            seen.append(sorted(name for name in late if name in sys.modules))

    sys.addaudithook(hook)
    from agent.cli import main
    code = main(sys.argv[2:])
    print(json.dumps({"code": code, "loaded_at_spawn": seen[0] if seen else None}))
""")


def _probe(args: list[str], env: dict[str, str], names: tuple[str, ...]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(names), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.slow
def test_offline_run_spawns_before_logging_sampling_or_http_load(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """Offline: structlog, requests, APScheduler, psutil, NVML and the collectors load after."""
    env = {**offline_env, "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state")}
    result = _probe(
        ["run", "--offline", "--", sys.executable, "-c", "pass"], env, (*LATE, "requests")
    )
    assert result == {"code": 0, "loaded_at_spawn": []}


@pytest.mark.slow
def test_online_run_spawns_before_attaching_and_sampling_load(
    env: dict[str, str], server: CometStandIn, tmp_path: Path
) -> None:
    """Online: the command starts at once; the experiment is made (requests) beside it."""
    env = {**env, "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state")}
    result = _probe(["run", "--", sys.executable, "-c", "pass"], env, (*LATE, "requests"))
    assert result == {"code": 0, "loaded_at_spawn": []}  # nothing of Comet's before the spawn
    assert len(server.created()) == 1
