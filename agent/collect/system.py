"""The samplers of the CPU job: which ones the settings turn on."""

from __future__ import annotations

from agent.collect.base import Roots, Sampler
from agent.collect.cpu import CpuSampler
from agent.collect.disk import DiskSampler, DiskstatsReader
from agent.collect.load import LoadSampler
from agent.collect.memory import MemorySampler
from agent.collect.network import NetworkSampler, net_dev_reader
from agent.collect.process import ProcessSampler
from agent.config import Settings


def system_samplers(
    settings: Settings, *, roots: Roots = Roots(), pid: int | None = None
) -> list[Sampler]:
    """Return the CPU-job samplers enabled by `settings`; `pid` is the watched process, if any.

    CPU and memory read the cgroup of `pid` (or of the agent itself without one), so a
    sidecar watching a process in a container reports against that container's limits.
    """
    samplers: list[Sampler] = []
    # Sampling a node through its mounted root: its init's cgroup is the root, so no container
    # limit applies (the agent's own pid means nothing in the host's /proc).
    cgroup_pid = 1 if pid is None and settings.host_root is not None else pid
    if settings.sample_cpu:
        samplers += [
            CpuSampler(roots=roots, pid=cgroup_pid, per_core=settings.per_core),
            MemorySampler(roots=roots, pid=cgroup_pid),
            LoadSampler(roots=roots),
        ]
    if settings.sample_disk:
        samplers.append(
            DiskSampler(
                path=roots.root / str(settings.disk_path).lstrip("/"),
                disk_io_counters=DiskstatsReader(roots),
            )
        )
    if settings.sample_network:
        samplers.append(NetworkSampler(net_io_counters=net_dev_reader(roots)))
    if settings.sample_process and pid is not None:
        samplers.append(ProcessSampler(pid))  # psutil reads /proc itself: the real roots

    return samplers
