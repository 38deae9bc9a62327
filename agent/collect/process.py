"""The watched process tree (a root pid and its descendants): CPU, RSS, count and threads.

Also ``tree_pids`` (which pids belong to the tree) and ``PidMap`` (pids across
PID namespaces from the ``NSpid:`` line of /proc/<pid>/status): NVML reports
pids as the host's namespace sees them, while psutil inside a container sees
the container's, so attributing GPU memory to the tree needs both.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import psutil

from agent.collect.base import Clock, Number, Roots, Sample, read_small
from agent.collect.cpu import MIN_WINDOW_S
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
    def is_running(self) -> bool: ...  # noqa: D102
    def oneshot(self) -> AbstractContextManager[None]: ...  # noqa: D102


ProcessFactory = Callable[[int], ProcessLike]


def child_pids(roots: Roots, pid: int) -> list[int]:
    """Return the children of `pid` from /proc/<pid>/task/*/children (empty once it is gone)."""
    task = roots.proc / str(pid) / "task"
    try:
        tids = os.listdir(task)
    except OSError:
        return []
    kids: list[int] = []
    for tid in tids:
        try:
            kids += [int(word) for word in read_small(task / tid / "children").split()]
        except (CollectorError, ValueError):
            continue  # the thread ended meanwhile
    return kids


def has_children_files(roots: Roots, pid: int) -> bool:
    """Whether the kernel lists children per thread (CONFIG_PROC_CHILDREN, Linux 3.5+)."""
    return (roots.proc / str(pid) / "task" / str(pid) / "children").is_file()


def descendant_pids(roots: Roots, root_pid: int) -> list[int]:
    """Return every descendant of `root_pid`, walking the children files down the tree.

    This reads a file per thread of the tree's members, where psutil's children()
    reads /proc/<pid>/stat of every process on the machine to build its parent map:
    on a host of a thousand processes, a hundred times the work for a small tree.
    """
    out: list[int] = []
    seen = {root_pid}
    stack = [root_pid]
    while stack:
        for kid in child_pids(roots, stack.pop()):
            if kid not in seen:
                seen.add(kid)
                out.append(kid)
                stack.append(kid)
    return out


def _root_alive(root_pid: int, root: ProcessLike) -> ProcessLike:
    if not root.is_running() or root.status() == psutil.STATUS_ZOMBIE:
        raise psutil.NoSuchProcess(root_pid)  # gone, reaped or not, or its pid reused
    return root


def _gone(root_pid: int) -> NoData:
    return NoData(f"watched process {root_pid} has exited")


def _denied(root_pid: int) -> CollectorError:
    return CollectorError(f"not allowed to read process {root_pid}; run the agent as the same user")


def tree_pids(
    root_pid: int, *, process: ProcessFactory = psutil.Process, roots: Roots = Roots()
) -> set[int]:
    """Return the pids of `root_pid` and all its descendants (this namespace's pids)."""
    try:
        root = _root_alive(root_pid, process(root_pid))
        if has_children_files(roots, root_pid):
            return {root_pid, *descendant_pids(roots, root_pid)}
        return {root_pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.NoSuchProcess:  # ZombieProcess is one too
        raise _gone(root_pid) from None
    except psutil.AccessDenied:
        raise _denied(root_pid) from None


class ProcessSampler:
    """Sample the watched tree: summed CPU percent (can exceed 100), RSS, processes, threads."""

    name = "process"

    def __init__(
        self,
        pid: int,
        *,
        process: ProcessFactory = psutil.Process,
        roots: Roots = Roots(),
        clock: Clock = now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pid = pid
        self._monotonic = monotonic
        self._process = process
        self._roots = roots
        self._clock = clock
        self._root: ProcessLike | None = None
        self._fast = has_children_files(roots, pid)
        # The same Process objects from one sample to the next: psutil's cpu_percent measures
        # since the object's previous call, and a new object's first call reads 0.0.
        self._known: dict[int, ProcessLike] = {}
        self._cpu_at = monotonic()  # when the processes' CPU window began
        # psutil's window rule; a process factory given by a test reads as asked.
        self._windowed = process is psutil.Process
        with contextlib.suppress(CollectorError):  # collect() says why, on schedule
            self._walk(with_cpu=True)  # priming

    def _members(self) -> list[ProcessLike]:
        """Return the root and its descendants, known objects reused; NoData once it is gone."""
        try:
            root = _root_alive(self._pid, self._root or self._process(self._pid))
            if not self._fast:  # psutil's own walk: fresh objects, swapped for known ones
                return [root, *map(self._reuse, root.children(recursive=True))]
        except psutil.NoSuchProcess:
            raise _gone(self._pid) from None
        except psutil.AccessDenied:
            raise _denied(self._pid) from None
        members = [root]
        for pid in descendant_pids(self._roots, self._pid):
            proc = self._known.get(pid)
            if proc is None:
                try:
                    proc = self._process(pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue  # ended between the listing and now
            members.append(proc)
        return members

    def _reuse(self, fresh: ProcessLike) -> ProcessLike:
        old = self._known.get(fresh.pid)
        return old if old is not None and old == fresh else fresh  # == compares creation times

    def _walk(self, *, with_cpu: bool) -> tuple[float, int, int, int]:
        procs = self._members()
        self._root = procs[0]
        known: dict[int, ProcessLike] = {}
        cpu, rss, count, threads = 0.0, 0, 0, 0
        for proc in procs:
            try:
                with proc.oneshot():
                    if with_cpu:  # else its window goes on growing until the next sample
                        cpu += max(0.0, proc.cpu_percent())  # a reused pid could read negative
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
            except psutil.NoSuchProcess:
                if proc is procs[0]:
                    raise _gone(self._pid) from None
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
        now = self._monotonic()
        # A shorter window would read about 0 % however busy the tree is: left out instead.
        with_cpu = not self._windowed or now - self._cpu_at >= MIN_WINDOW_S
        cpu, rss, count, threads = self._walk(with_cpu=with_cpu)
        metrics: dict[str, Number] = {
            "sys.process.rss_bytes": rss,
            "sys.process.count": count,
            "sys.process.threads": threads,
        }
        if with_cpu:
            self._cpu_at = now
            metrics = {"sys.process.cpu_percent": round(cpu, 1), **metrics}
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
