"""process.py: the watched process tree (real subprocesses), and pids across PID namespaces."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from agent.collect.base import Roots, Sample
from agent.collect.process import (
    ProcessSampler,
    child_pids,
    descendant_pids,
    has_children_files,
    parse_nspid,
    read_pid_map,
    tree_pids,
)
from agent.errors import CollectorError, NoData
from tests.helpers import wait_until

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_800_000_000_000


@pytest.fixture(name="tree")
def _tree() -> Iterator[subprocess.Popen[bytes]]:
    """A real tree: sh with two sleeping children, in its own session so it can be killed whole."""
    sh = shutil.which("sh") or "/bin/sh"
    proc = subprocess.Popen([sh, "-c", "sleep 30 & sleep 30 & wait"], start_new_session=True)
    wait_until(lambda: len(psutil.Process(proc.pid).children()) == 2)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_real_tree(tree: subprocess.Popen[bytes]) -> None:
    """sh and two sleeps: 3 processes, 3 threads, their RSS summed; no CPU figure over a window
    under half a second (it would read 0 %), one over a longer window."""
    ticks = iter([0.0, 0.1, 1.0])
    sampler = ProcessSampler(tree.pid, clock=lambda: T0, monotonic=lambda: next(ticks))
    early = sampler.collect()
    assert "sys.process.cpu_percent" not in early.metrics
    assert early.metrics["sys.process.count"] == 3
    sample = sampler.collect()
    members = [psutil.Process(tree.pid), *psutil.Process(tree.pid).children(recursive=True)]
    assert sample.timestamp_ms == T0
    assert sample.metrics["sys.process.count"] == 3
    assert sample.metrics["sys.process.threads"] == 3
    assert sample.metrics["sys.process.rss_bytes"] > 0
    assert sample.metrics["sys.process.rss_bytes"] <= sum(p.memory_info().rss for p in members) * 2
    assert 0 <= sample.metrics["sys.process.cpu_percent"] < 50  # they sleep
    assert tree_pids(tree.pid) == {p.pid for p in members}


def test_root_gone_is_nodata(tree: subprocess.Popen[bytes]) -> None:
    """The root exits: NoData while it is a zombie and after it is reaped; no crash."""
    sampler = ProcessSampler(tree.pid)
    os.killpg(tree.pid, signal.SIGKILL)
    wait_until(lambda: psutil.Process(tree.pid).status() == psutil.STATUS_ZOMBIE)
    with pytest.raises(NoData, match=f"watched process {tree.pid} has exited"):
        sampler.collect()
    tree.wait()
    with pytest.raises(NoData, match=f"watched process {tree.pid} has exited"):
        sampler.collect()
    with pytest.raises(NoData):
        tree_pids(tree.pid)


def test_children_files_walk_the_same_tree_as_psutil() -> None:
    """A deeper real tree: the children files find exactly what psutil's full scan finds."""
    sh = shutil.which("sh") or "/bin/sh"
    script = f"{sh} -c 'sleep 30 & wait' & sleep 30 & wait"
    proc = subprocess.Popen([sh, "-c", script], start_new_session=True)
    try:
        wait_until(lambda: len(psutil.Process(proc.pid).children(recursive=True)) == 3)
        assert has_children_files(Roots(), proc.pid)
        by_psutil = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert set(descendant_pids(Roots(), proc.pid)) == by_psutil
        assert tree_pids(proc.pid) == {proc.pid, *by_psutil}
        assert ProcessSampler(proc.pid).collect().metrics["sys.process.count"] == 4
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_descendants_from_children_files(tmp_path: Path) -> None:
    """Children hang off the thread that forked them; every thread's file is read; no loops."""
    files = {
        "100/task/100/children": "101 102 ",
        "100/task/105/children": "103",  # forked by a second thread of 100
        "101/task/101/children": "104\n",
        "102/task/102/children": "",
        "103/task/103/children": "100",  # nonsense a race could produce: never loops
    }
    for rel, text in files.items():
        (tmp_path / "proc" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "proc" / rel).write_text(text)
    roots = Roots.under(tmp_path)
    assert sorted(descendant_pids(roots, 100)) == [101, 102, 103, 104]
    assert sorted(child_pids(roots, 100)) == [101, 102, 103]
    assert child_pids(roots, 999) == []  # gone
    assert has_children_files(roots, 100)
    assert not has_children_files(roots, 105)


def test_unknown_pid_at_start() -> None:
    """A pid that never existed: construction succeeds, collect() says why."""
    pid = 2**22 + 12345  # above pid_max's default ceiling
    sampler = ProcessSampler(pid)
    with pytest.raises(NoData, match=f"watched process {pid} has exited"):
        sampler.collect()


# --- exact arithmetic with process objects built by the test --------------------------------------

# No /proc/<pid>/task/*/children here: the sampler falls back to the objects' children().
NO_PROC = Roots.under(FIXTURES / "cgroup1")


@dataclass(eq=False)
class Proc:
    """The part of psutil.Process the sampler calls; a field holding an exception raises it."""

    pid: int
    cpu: list[float | Exception] = field(default_factory=list)
    rss: int = 0
    threads: int = 1
    kids: list[Proc] = field(default_factory=list)
    state: str = psutil.STATUS_SLEEPING
    generation: int = 0  # a different generation with the same pid is a reused pid
    denied: bool = False  # /proc/<pid> of another user's process

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Proc) and (self.pid, self.generation) == (
            other.pid,
            other.generation,
        )

    __hash__ = None  # type: ignore[assignment]

    def children(self, recursive: bool = False) -> list[Proc]:
        if self.denied:
            raise psutil.AccessDenied(self.pid)
        out: list[Proc] = []
        for kid in self.kids:
            out.append(kid)
            out.extend(kid.children(recursive=True) if recursive else [])
        return out

    def cpu_percent(self, interval: float | None = None) -> float:
        value = self.cpu.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    def memory_info(self) -> psutil._ntp.pmem:  # type: ignore[name-defined]
        return psutil._ntp.pmem(self.rss, 0, 0, 0, 0, 0, 0)  # type: ignore[attr-defined]

    def num_threads(self) -> int:
        return self.threads

    def status(self) -> str:
        return self.state

    def is_running(self) -> bool:
        return True

    def oneshot(self) -> AbstractContextManager[None]:
        return nullcontext()


def test_sums_reuse_objects_and_skip_vanished_children() -> None:
    """CPU summed over the tree (above 100 here); objects kept between samples; a dying child."""
    worker = Proc(11, cpu=[0.0, 95.5, 99.0], rss=2_000, threads=4)
    helper = Proc(12, cpu=[0.0, 60.0, psutil.NoSuchProcess(12)], rss=500, threads=2)
    root = Proc(10, cpu=[0.0, 30.0, 1.0], rss=1_000, threads=3, kids=[worker, helper])
    made: list[int] = []

    def factory(pid: int) -> Proc:
        made.append(pid)
        return root

    sampler = ProcessSampler(10, process=factory, roots=NO_PROC, clock=lambda: T0)  # primes
    assert sampler.collect() == Sample(
        T0,
        {
            "sys.process.cpu_percent": 185.5,
            "sys.process.rss_bytes": 3_500,
            "sys.process.count": 3,
            "sys.process.threads": 9,
        },
    )
    assert sampler.collect().metrics == {
        "sys.process.cpu_percent": 100.0,
        "sys.process.rss_bytes": 3_000,
        "sys.process.count": 2,
        "sys.process.threads": 7,
    }
    assert made == [10]  # the root object is kept, not rebuilt each sample


def test_new_and_reused_pids_start_fresh() -> None:
    """A child whose pid was reused is a new object: its first reading counts as 0."""
    old = Proc(11, cpu=[0.0, 50.0])
    root = Proc(10, cpu=[0.0, 0.0, 0.0], kids=[old])
    sampler = ProcessSampler(10, process=lambda _pid: root, roots=NO_PROC)
    assert sampler.collect().metrics["sys.process.cpu_percent"] == 50.0
    root.kids = [Proc(11, cpu=[0.0], generation=1)]
    assert sampler.collect().metrics["sys.process.cpu_percent"] == 0.0


def test_access_denied() -> None:
    """The root unreadable: a CollectorError saying what to do; a setuid child: counted only."""
    denied = Proc(10, denied=True)
    sampler = ProcessSampler(10, process=lambda _pid: denied, roots=NO_PROC)
    with pytest.raises(CollectorError, match="run the agent as the same user"):
        sampler.collect()
    setuid = Proc(11, cpu=[psutil.AccessDenied(11)] * 2, rss=999)
    root = Proc(10, cpu=[0.0, 5.0], rss=100, kids=[setuid])
    metrics = ProcessSampler(10, process=lambda _pid: root, roots=NO_PROC).collect().metrics
    assert (metrics["sys.process.count"], metrics["sys.process.rss_bytes"]) == (2, 100)


# --- PID namespaces ---------------------------------------------------------------------------


def test_parse_nspid() -> None:
    """The chain runs from the reader's namespace to the process's own."""
    assert parse_nspid("Name:\tx\nNSpid:\t4300\t12\t3\nThreads:\t1\n") == (4300, 12, 3)
    assert parse_nspid("NSpid:\t77\n") == (77,)
    with pytest.raises(NoData, match="no NSpid line"):
        parse_nspid("Name:\tx\nPid:\t5\n")
    for bad in ["NSpid:\n", "NSpid:\tabc\n"]:
        with pytest.raises(CollectorError, match="unexpected line"):
            parse_nspid(bad)


def test_pid_map_from_fixture_status_files() -> None:
    """host-plain: 4242/4243 in one container (1, 7), 4250 in another (1), 4300 nested."""
    roots = Roots.under(FIXTURES / "host-plain")
    pids = read_pid_map(roots)
    assert [pids.local_pid(p) for p in (77, 4242, 4243, 4250, 4300, 999)] == [
        77,
        1,
        7,
        1,
        3,
        None,
    ]
    assert pids.host_pid(7) == 4243
    assert pids.host_pid(3) == 4300
    assert pids.host_pid(1) is None  # two containers have a pid 1: ambiguous
    one_container = read_pid_map(roots, [4242, 4243, 31337])  # 31337 does not exist
    assert (one_container.host_pid(1), one_container.host_pid(7)) == (4242, 4243)


def test_pid_map_on_this_machine() -> None:
    """Our own pid is in the map; outside a PID namespace it maps to itself."""
    pids = read_pid_map(Roots(), [os.getpid()])
    chain = parse_nspid(Path(f"/proc/{os.getpid()}/status").read_text())
    assert pids.local_pid(os.getpid()) == chain[-1]
    assert pids.host_pid(chain[-1]) == os.getpid()
