"""Multi-node identity: rank from the launcher, a context per node and rank, one leader."""

from __future__ import annotations

import pytest

from agent.lifecycle.multinode import identify, is_leader


@pytest.mark.parametrize(
    ("env", "rank", "context"),
    [
        ({}, None, None),
        ({"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1"}, 3, "node1-rank3"),
        ({"SLURM_PROCID": "5", "SLURM_NODEID": "2", "SLURM_LOCALID": "1"}, 5, "node2-rank5"),
        ({"OMPI_COMM_WORLD_RANK": "7"}, 7, "gpu-node-07-rank7"),
        ({"JOB_COMPLETION_INDEX": "0"}, 0, "gpu-node-07-rank0"),
        ({"RANK": "x", "SLURM_PROCID": "2"}, 2, "gpu-node-07-rank2"),
    ],
)
def test_identity_from_launcher_variables(
    env: dict[str, str], rank: int | None, context: str | None
) -> None:
    """torchrun, Slurm, Open MPI and Kubernetes indexed jobs each give a rank and a context."""
    ident = identify(env, hostname="gpu-node-07")
    assert ident.rank == rank
    assert ident.context == context


def test_leader_is_rank_zero_unless_told() -> None:
    """auto: rank 0 (or no rank at all) leads; leader/follower force it."""
    assert is_leader(identify({}, "h"), "auto")
    assert is_leader(identify({"RANK": "0"}, "h"), "auto")
    assert not is_leader(identify({"RANK": "1"}, "h"), "auto")
    assert is_leader(identify({"RANK": "1"}, "h"), "leader")
    assert not is_leader(identify({}, "h"), "follower")


def test_qualified_keys() -> None:
    """Per-node facts get node-qualified keys; alone, keys stay plain."""
    assert (
        identify({"RANK": "1", "NODE_RANK": "0"}, "h").qualify("hostname") == "node0-rank1.hostname"
    )
    assert identify({}, "h").qualify("hostname") == "hostname"
