"""The watched process tree (a root pid and its descendants): CPU, RSS, count and threads.

Also ``tree_pids`` (which pids belong to the tree) and ``PidMap`` (pids across
PID namespaces from the ``NSpid:`` line of /proc/<pid>/status): NVML reports
pids as the host's namespace sees them, while psutil inside a container sees
the container's, so attributing GPU memory to the tree needs both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import psutil

from agent.collect.base import Clock, Number, Roots, Sample, read_small
from agent.errors import CollectorError, NoData
from agent.message import now_ms


class _Rss(Protocol):
    @property
    def rss(self) -> int: ...


class ProcessLike(Protocol):
    """The part of psutil.Process the sampler uses."""

    @property
    def pid(self) -> int: ...  # noqa: D102
    def children(self, recursive: bool = False) -> Sequence[ProcessLike]: ...  # noqa: D102
    def cpu_percent(self, interval: float | None = None) -> float: ...  # noqa: D102
    def memory_info(self) -> _Rss: ...  # noqa: D102
    def num_threads(self) -> int: ...  # noqa: D102
    def status(self) -> str: ...  # noqa: D102
    def oneshot(self) -> AbstractContextManager[None]: ...  # noqa: D102


ProcessFactory = Callable[[int], ProcessLike]


def _tree(
    root_pid: int, process: ProcessFactory, root: ProcessLike | None = None
) -> list[ProcessLike]:
    """Return the root and its descendants; NoData when the root has exited."""
    try:
        root = root if root is not None else process(root_pid)
        if root.status() == psutil.STATUS_ZOMBIE:
            raise psutil.NoSuchProcess(root_pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:  # ZombieProcess is one too
        raise NoData(f"watched process {root_pid} has exited") from None
    except psutil.AccessDenied:
        raise CollectorError(
            f"not allowed to read process {root_pid}; run the agent as the same user"
        ) from None


def tree_pids(root_pid: int, *, process: ProcessFactory = psutil.Process) -> set[int]:
    """Return the pids of `root_pid` and all its descendants (this namespace's pids)."""
    return {p.pid for p in _tree(root_pid, process)}


class ProcessSampler:
    """Sample the watched tree: summed CPU percent (can exceed 100), RSS, processes, threads."""

    name = "process"

    def __init__(
        self, pid: int, *, process: ProcessFactory = psutil.Process, clock: Clock = now_ms
    ) -> None:
        self._pid = pid
        self._process = process
        self._clock = clock
        self._root: ProcessLike | None = None
        # The same Process objects from one sample to the next: psutil's cpu_percent measures
        # since the object's previous call, and a new object's first call reads 0.0.
        self._known: dict[int, ProcessLike] = {}
        with contextlib.suppress(CollectorError):  # collect() says why, on schedule
            self._walk()  # priming

    def _walk(self) -> tuple[float, int, int, int]:
        procs = _tree(self._pid, self._process, self._root)
        self._root = procs[0]
        known: dict[int, ProcessLike] = {}
        cpu, rss, count, threads = 0.0, 0, 0, 0
        for fresh in procs:
            old = self._known.get(fresh.pid)
            proc = old if old is not None and old == fresh else fresh  # == checks pid reuse
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent()
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
            except psutil.NoSuchProcess:
                if proc is procs[0]:
                    raise NoData(f"watched process {self._pid} has exited") from None
                continue  # a child that ended during the walk
            except psutil.AccessDenied:
                pass  # a setuid child: counted, its figures unknown
            known[proc.pid] = proc
            count += 1
        self._known = known
        return cpu, rss, count, threads

    def collect(self) -> Sample:
        """Read the tree now; NoData once the root process is gone."""
        stamp = self._clock()
        cpu, rss, count, threads = self._walk()
        metrics: dict[str, Number] = {
            "sys.process.cpu_percent": round(cpu, 1),
            "sys.process.rss_bytes": rss,
            "sys.process.count": count,
            "sys.process.threads": threads,
        }
        return Sample(stamp, metrics)

    def close(self) -> None:
        """Forget the process objects."""
        self._known.clear()
        self._root = None


# ---------------------------------------------------------------------------------------------
# PID namespaces


def parse_nspid(text: str) -> tuple[int, ...]:
    """Return the NSpid chain from /proc/<pid>/status: the reader's namespace first, own last."""
    for line in text.splitlines():
        if line.startswith("NSpid:"):
            try:
                chain = tuple(int(word) for word in line.split()[1:])
            except ValueError:
                chain = ()
            if not chain:
                raise CollectorError(f"/proc/<pid>/status: unexpected line {line[:60]!r}")
            return chain
    raise NoData("/proc/<pid>/status has no NSpid line (Linux before 4.1)")


class PidMap:
    """Pids as the reading /proc's namespace sees them (host) and as each process's own does.

    "host" is the host's pid when ``roots.proc`` is the host's /proc (the agent on the
    host, or the host's /proc mounted into its container); inside a container's own
    /proc only container pids are visible and the two views are the same.
    """

    def __init__(self, chains: Mapping[int, tuple[int, ...]]) -> None:
        self._local = {host: chain[-1] for host, chain in chains.items()}
        by_local: dict[int, int | None] = {}
        for host, local in self._local.items():
            by_local[local] = None if local in by_local else host  # ambiguous: pid 1 of each
        self._host = by_local

    def local_pid(self, host_pid: int) -> int | None:
        """Return the pid `host_pid` has in its own innermost namespace, None if unknown."""
        return self._local.get(host_pid)

    def host_pid(self, local_pid: int) -> int | None:
        """Return the host pid of `local_pid`; None if unknown or if several processes have it."""
        return self._host.get(local_pid)


def read_pid_map(roots: Roots = Roots(), pids: Iterable[int] | None = None) -> PidMap:
    """Read the NSpid chains of `pids` (default: every process) under ``roots.proc``.

    Pass the candidates (NVML's pids, say) when you have them: it is cheaper than
    scanning every process, and local pids repeat across containers.
    """
    if pids is None:
        try:
            pids = [int(name) for name in _listdir(roots) if name.isdigit()]
        except OSError as exc:
            raise CollectorError(f"cannot list {roots.proc}: {exc.strerror or exc}") from None
    chains: dict[int, tuple[int, ...]] = {}
    for pid in pids:
        try:
            chains[pid] = parse_nspid(read_small(roots.proc / str(pid) / "status"))
        except CollectorError:
            continue  # exited meanwhile, or a kernel without NSpid
    return PidMap(chains)


def _listdir(roots: Roots) -> list[str]:
    return [entry.name for entry in roots.proc.iterdir()]
