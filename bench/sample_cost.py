"""CPU cost of one full system sample against the bare psutil calls it needs (not a test).

Run: ``python -m bench.sample_cost [--iterations 2000] [--rounds 5]``

Both sides run in the same process, interleaved in rounds so that drift in the
machine's load hits both alike; each figure is ``time.process_time()`` per
sample, per sampler and in all. "Sampler" is each sampler ``system_samplers``
builds (cpu, memory, load, disk, network, and process on a small real tree:
sh with two sleeps), cgroup files included. "Bare" is the psutil calls behind
it, results unused; for the process tree that is psutil's children(), which
scans every process and which the sampler replaces by the tree's own
/proc/<pid>/task/*/children files, so "all but process" is the like-for-like
line. Goal: <= 1.3x the bare calls and <= 2 ms per full sample.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from agent.collect.base import Sampler
from agent.collect.system import system_samplers
from agent.config import Settings
from agent.errors import CollectorError


def bare_calls(pid: int) -> dict[str, Callable[[], object]]:
    """The psutil calls each sampler stands on, results unused, keyed by sampler name."""
    root = psutil.Process(pid)

    def tree() -> None:  # the SDK's way: psutil's children() scans every process
        for proc in [root, *root.children(recursive=True)]:
            with proc.oneshot():
                proc.cpu_percent()
                proc.memory_info()
                proc.num_threads()

    return {
        "cpu": lambda: psutil.cpu_percent(interval=None, percpu=True),
        "memory": psutil.virtual_memory,
        "load": os.getloadavg,
        "disk": lambda: (psutil.disk_usage("/"), psutil.disk_io_counters()),
        "network": psutil.net_io_counters,
        "process": tree,
    }


SKIPPED: list[str] = []


def sampler_calls(pid: int) -> dict[str, Callable[[], object]]:
    """collect() of every sampler the default settings turn on, failures counted and skipped."""

    def guarded(sampler: Sampler) -> Callable[[], object]:
        def once() -> object:
            try:
                return sampler.collect()
            except CollectorError as exc:  # as the scheduler's guard does
                SKIPPED.append(f"{sampler.name}: {exc}")
                return None

        return once

    return {s.name: guarded(s) for s in system_samplers(Settings(), pid=pid)}


def cpu_seconds(fn: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return time.process_time() - start


@dataclass(frozen=True)
class SampleCost:
    """CPU ms per sample, per sampler name, on each side."""

    samples: int
    rounds: int
    bare_ms: dict[str, float]
    ours_ms: dict[str, float]
    processes: int
    load_before: float
    load_after: float
    skipped: list[str]

    def total(self, side: dict[str, float], *, process: bool = True) -> float:
        """ms per full sample on one side, with or without the process tree."""
        return sum(v for k, v in side.items() if process or k != "process")

    @property
    def ratio(self) -> float:
        """Ours over bare, all samplers but the process tree (the like-for-like line)."""
        return self.total(self.ours_ms, process=False) / self.total(self.bare_ms, process=False)


def measure(iterations: int = 2000, rounds: int = 5) -> SampleCost:
    """Time both sides on a small real process tree; return ms per sample."""
    SKIPPED.clear()
    sh = shutil.which("sh") or "/bin/sh"
    tree = subprocess.Popen([sh, "-c", "sleep 600 & sleep 600 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(psutil.Process(tree.pid).children()) < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        bare, ours = bare_calls(tree.pid), sampler_calls(tree.pid)
        per_round = max(1, iterations // rounds)
        t_bare = dict.fromkeys(bare, 0.0)
        t_ours = dict.fromkeys(bare, 0.0)
        load_before = os.getloadavg()[0]
        for _ in range(rounds):  # interleaved, so drift in load hits both sides alike
            for name in bare:
                t_bare[name] += cpu_seconds(bare[name], per_round)
                t_ours[name] += cpu_seconds(ours[name], per_round)
        load_after = os.getloadavg()[0]
        pids = len(psutil.pids())
    finally:
        os.killpg(tree.pid, signal.SIGKILL)
        tree.wait()
    n = per_round * rounds
    return SampleCost(
        n,
        rounds,
        {k: v / n * 1000 for k, v in t_bare.items()},
        {k: v / n * 1000 for k, v in t_ours.items()},
        pids,
        load_before,
        load_after,
        list(SKIPPED),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    r = measure(args.iterations, args.rounds)
    print(
        f"{r.samples} samples each side in {r.rounds} interleaved rounds; {os.cpu_count()} CPUs, "
        f"{r.processes} processes; load average {r.load_before:.2f} before, "
        f"{r.load_after:.2f} after"
    )
    print(f"{'sampler':<10}{'bare psutil ms':>16}{'sampler ms':>12}{'ratio':>8}")
    for name, b in r.bare_ms.items():
        o = r.ours_ms[name]
        print(f"{name:<10}{b:>16.3f}{o:>12.3f}{o / b:>8.2f}")
    b_all, o_all = r.total(r.bare_ms), r.total(r.ours_ms)
    b_np, o_np = r.total(r.bare_ms, process=False), r.total(r.ours_ms, process=False)
    print(f"{'all':<10}{b_all:>16.3f}{o_all:>12.3f}{o_all / b_all:>8.2f}")
    print(f"{'all but process':<16}{b_np:>10.3f}{o_np:>12.3f}{o_np / b_np:>8.2f}")
    print("goal: <= 1.3x the bare calls and <= 2 ms per full sample")
    if r.skipped:
        print(f"skipped samples: {len(r.skipped)}, e.g. {r.skipped[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
