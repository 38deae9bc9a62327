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


# What an offline daemon on a host without an NVIDIA driver would hold in memory for its
# whole life and never use (issue 16: RSS): rich and better-exceptions (structlog renders
# exceptions with them when installed; comet_ml brings rich), pynvml without its library,
# importlib.metadata for one package list at start, secrets for one archive name at the end,
# ssl (asyncio imports it for structlog; offline, nothing speaks TLS).
IDLE_WEIGHT = (
    "rich",
    "better_exceptions",
    "pynvml",
    "importlib.metadata",
    "email",
    "secrets",
    "ssl",
)
DAEMON_PROBE = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    from pathlib import Path
    names, offline = json.loads(sys.argv[1]), Path(sys.argv[2])
    found = []

    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not found:
            for part in offline.glob("*.partial/messages.json"):
                if b'"metric_msg"' in part.read_bytes():
                    found.append(sorted(n for n in names if sys.modules.get(n) is not None))
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    sys.argv = ["comet-agent", *sys.argv[3:]]
    from agent.cli import main
    code = main()
    print(json.dumps({"code": code, "loaded_when_sampling": found[0] if found else None}))
""")


@pytest.mark.slow
def test_an_offline_daemon_holds_none_of_what_it_never_uses(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """The real entry point (main() with the process's own argv), sampling at 1 s: none of
    IDLE_WEIGHT is loaded once samples are written, though rich is installed here."""
    from agent.collect.nvml_library import missing_library

    if missing_library() is None:
        pytest.skip("an NVML library loads here: pynvml is rightly imported")
    pytest.importorskip("rich")  # the test extra's comet_ml brings it: what makes this bite
    offline = tmp_path / "offline"
    env = {
        **offline_env,
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_OFFLINE_DIRECTORY": str(offline),
    }
    done = subprocess.run(
        [
            *(sys.executable, "-c", DAEMON_PROBE, json.dumps(IDLE_WEIGHT), str(offline)),
            *("start", "--offline", "--cpu-interval", "1"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"code": 0, "loaded_when_sampling": []}, done.stderr[-3000:]
