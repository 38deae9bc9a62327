"""Sidecar mode: the key handed over through a shared file, the sidecar ending with the job."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.errors import AgentError, ConfigError
from agent.lifecycle.sidecar import publish_key, read_key
from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import run_agent, wait_until

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(name="side_env")
def _side_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A sidecar that cannot create experiments itself (no workspace): it waits for the key."""
    out = {
        **env,
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_AGENT_GIT_METADATA": "false",
        "COMET_AGENT_GIT_PATCH": "false",
        "COMET_AGENT_KEY_FILE_TIMEOUT_S": "20",
    }
    out.pop("COMET_WORKSPACE")
    return out


def test_key_file_appearing_late_is_waited_for(
    server: CometStandIn, side_env: dict[str, str], tmp_path: Path
) -> None:
    """The sidecar waits for the training container to write the key, then attaches to it."""
    key_file = tmp_path / "shared" / "experiment-key"
    agent = AgentProcess(["start", "--experiment-key-file", str(key_file)], side_env)
    agent.wait_for("sidecar.waiting")
    time.sleep(1.0)
    publish_key(str(key_file), KEY)
    agent.wait_for("agent.ready")
    wait_until(lambda: server.count("add-cpu-metrics") >= 1)
    assert agent.stop() == 0
    assert {r.experiment_key for r in server.received("add-cpu-metrics")} == {KEY}
    assert server.count("create-experiment") == 0


def test_key_file_never_appearing_is_a_clear_timeout(
    server: CometStandIn, side_env: dict[str, str], tmp_path: Path
) -> None:
    """No key within key_file_timeout_s: one line naming the file and the setting, exit 1."""
    env = {**side_env, "COMET_AGENT_KEY_FILE_TIMEOUT_S": "1"}
    key_file = tmp_path / "never"
    result = run_agent(["start", "--experiment-key-file", str(key_file)], env)
    assert result.returncode == 1
    assert f"no experiment key appeared in {key_file} within 1 s" in result.stderr
    assert "key_file_timeout_s" in result.stderr
    assert server.count(ok_only=False) == 0


def test_creator_writes_the_key_and_exits_with_the_main_process(
    server: CometStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    """A sidecar able to create writes the new key for the trainer; when the main process
    ends, it takes a last sample, flushes and exits 0."""
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    key_file = tmp_path / "shared" / "experiment-key"
    agent = AgentProcess(
        ["start", "--experiment-key-file", str(key_file), "--exit-with", str(trainer.pid)],
        {
            **env,
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
            "COMET_AGENT_GIT_PATCH": "false",
        },
    )
    agent.wait_for("agent.ready")
    wait_until(key_file.exists)
    created = str(agent.named("agent.ready")[0]["experiment_key"])
    assert key_file.read_text() == created + "\n"
    wait_until(lambda: server.count("add-cpu-metrics") >= 1)
    trainer.kill()
    trainer.wait()
    assert agent.wait(timeout_s=30) == 0
    assert agent.named("agent.exit_with")
    ends = [r.body["endTimeMillis"] for r in server.received("set-start-end-time")]  # type: ignore[index]
    assert ends[-1] is not None


def test_exit_with_a_file(server: CometStandIn, env: dict[str, str], tmp_path: Path) -> None:
    """--exit-with PATH: the sidecar stops once the trainer touches the file."""
    done = tmp_path / "shared" / "done"
    agent = AgentProcess(
        ["start", "--exit-with", str(done)],
        {**env, "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state")},
    )
    agent.wait_for("agent.ready")
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text("")
    assert agent.wait(timeout_s=30) == 0


def test_key_file_contents_are_checked(tmp_path: Path) -> None:
    """An empty file is 'not yet'; garbage is a config error naming the file."""
    path = tmp_path / "k"
    assert read_key(path) is None
    path.write_text("\n")
    assert read_key(path) is None
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match=str(path)):
        read_key(path)
    publish_key(str(path), KEY)
    assert read_key(path) == KEY


def test_unwritable_key_file_is_named(tmp_path: Path) -> None:
    """Publishing into a path that cannot be written names it and the fix."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(AgentError, match="cannot write the experiment key to"):
        publish_key(str(blocker / "k"), KEY)
