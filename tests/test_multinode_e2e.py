"""Two agents of one distributed job report into one experiment: distinct contexts, facts once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import run_agent, wait_until

FAST = {
    "isAliveBeatDurationMillis": 1000,
    "cpuMonitorIntervalMillis": 1000,
    "gpuMonitorIntervalMillis": 1000,
}


def _node_env(env: dict[str, str], tmp_path: Path, rank: int) -> dict[str, str]:
    return {
        **env,
        "RANK": str(rank),
        "LOCAL_RANK": "0",
        "GROUP_RANK": str(rank),
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / f"state-{rank}"),
    }


def _repo(tmp_path: Path, genv: dict[str, str]) -> Path:
    """A git repository of its own: the test must not depend on where pytest runs."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run([git, *args], cwd=repo, env=genv, check=True)
    return repo


def test_two_ranks_one_experiment(
    server: CometStandIn, env: dict[str, str], tmp_path: Path, genv: dict[str, str]
) -> None:
    """Rank 0 creates and publishes the key; rank 1 waits for it. Samples carry node1-rank1 and
    node0-rank0 contexts; git, the start and end times and the host fields are sent once (by
    rank 0); rank 1's host facts arrive as node-qualified extra items."""
    server.answer_keepalive(FAST)
    key_file = tmp_path / "shared" / "key"
    repo = _repo(tmp_path, genv)
    follower = AgentProcess(
        ["start", "--experiment-key-file", str(key_file)], _node_env(env, tmp_path, 1), cwd=repo
    )
    follower.wait_for("sidecar.waiting")
    leader = AgentProcess(
        ["start", "--experiment-key-file", str(key_file)], _node_env(env, tmp_path, 0), cwd=repo
    )
    leader.wait_for("agent.ready")
    follower.wait_for("agent.ready")
    key = str(leader.named("agent.ready")[0]["experiment_key"])
    assert follower.named("agent.ready")[0]["experiment_key"] == key
    wait_until(
        lambda: (
            {r.body.get("context") for r in server.received("add-cpu-metrics")}  # type: ignore[union-attr]
            >= {"node0-rank0", "node1-rank1"}
        ),
        timeout_s=20,
    )
    assert leader.stop() == 0
    assert follower.stop() == 0
    assert server.created() == [key]
    assert {r.experiment_key for r in server.requests if r.experiment_key} == {key}
    contexts = {i["context"] for i in server.metric_items()}
    assert contexts == {"node0-rank0", "node1-rank1"}
    assert server.count("set-git-metadata") == 1
    assert server.count("set-start-end-time") == 2  # the leader's start, then its end
    details = [r.body for r in server.received("set-system-details")]
    full = [d for d in details if "hostname" in d]  # type: ignore[operator]
    assert len(full) == 1
    follower_keys = {
        item["key"]
        for d in details
        if "hostname" not in d  # type: ignore[operator]
        for item in d["logAdditionalSystemInfoList"]
    }  # type: ignore[index]
    assert {"node1-rank1.hostname", "node1-rank1.rank", "node1-rank1.pid"} <= follower_keys


def test_follower_without_a_key_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    """A rank other than 0 never creates an experiment of its own: exit 2 with the ways out."""
    result = run_agent(["start"], _node_env(env, tmp_path, 3))
    assert result.returncode == 2
    assert "this agent is a follower" in result.stderr
