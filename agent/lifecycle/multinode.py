"""Who this agent is in a distributed job: its rank, its node, and whether it leads.

When several agents report into one experiment (torchrun, Slurm, MPI,
Kubernetes indexed jobs), each tags its samples with a ``context`` built from
its node and rank, and only the leader sends the experiment-level facts
(start/end time, the full system details, git). The others send their node's
facts as node-qualified entries of ``logAdditionalSystemInfoList``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

# (variable, meaning), in the order they are trusted: the launcher's global rank first.
_RANK_VARS = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "JOB_COMPLETION_INDEX")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")
_NODE_VARS = ("SLURM_NODEID", "GROUP_RANK", "NODE_RANK")


@dataclass(frozen=True)
class Identity:
    """This agent's place in the job."""

    hostname: str
    rank: int | None = None
    local_rank: int | None = None
    node: str | None = None
    rank_source: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether a launcher gave this process a rank."""
        return self.rank is not None

    @property
    def context(self) -> str | None:
        """The context for this agent's samples: None alone (as the SDK), else node and rank."""
        if not self.distributed:
            return None
        node = self.node if self.node is not None else self.hostname
        return _clean(f"node{node}" if node.isdigit() else node) + f"-rank{self.rank}"

    def qualify(self, key: str) -> str:
        """A logAdditionalSystemInfoList key qualified by this node and rank."""
        return f"{self.context}.{key}" if self.context else key

    def as_dict(self) -> dict[str, object]:
        """Plain data for status and system details."""
        return {
            "hostname": self.hostname,
            "rank": self.rank,
            "local_rank": self.local_rank,
            "node": self.node,
            "rank_source": self.rank_source,
            "context": self.context,
        }


def identify(environ: Mapping[str, str], hostname: str | None = None) -> Identity:
    """Read the launcher's variables (torchrun, Slurm, Open MPI, PMI, Kubernetes)."""
    host = hostname or socket.gethostname()
    rank, source = _first_int(environ, _RANK_VARS)
    local_rank, _ = _first_int(environ, _LOCAL_RANK_VARS)
    node_value = next((environ[v] for v in _NODE_VARS if environ.get(v, "").strip()), None)
    return Identity(
        hostname=host,
        rank=rank,
        local_rank=local_rank,
        node=node_value.strip() if node_value else None,
        rank_source=source,
    )


def is_leader(identity: Identity, role: str) -> bool:
    """Whether this agent sends the experiment-level facts (role: auto, leader, follower)."""
    if role == "leader":
        return True
    if role == "follower":
        return False
    return identity.rank in (None, 0)


def _first_int(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[int | None, str | None]:
    for name in names:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value), name
    return None, None


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:64]
