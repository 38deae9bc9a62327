"""What the run wrapper's process side adds: start-up time and throughput loss.

Runs each case bare (the command's stdout and stderr on /dev/null) and through
run_child + OutputStream (the passthrough on /dev/null, a put that only
counts, so this measures the wrapper and not the network), in the same run:

* start-up: `python -c pass`, median of N runs; and what importing
  agent.wrap.process + agent.wrap.output adds to the CLI's own imports in a fresh interpreter;
* paced: a writer of 100,000 lines/s for 2 s, each line its own write();
* flat out: a writer of 1,000,000 lines as fast as it can (block-buffered)
  (``measure()`` takes smaller sizes for a quick run).

Throughput cases also run as `COMMAND | cat > /dev/null`: the cost of any pipe.

usage: python -m bench.run_overhead [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from agent.message import Message
from agent.wrap.output import OutputStream
from agent.wrap.process import run_child

PY = sys.executable
PACED = """
import sys, time
rate, seconds = RATE, SECONDS
write, flush = sys.stdout.write, sys.stdout.flush
begun = time.monotonic()
sent = 0
total = int(rate * seconds)
while sent < total:
    for _ in range(min(1000, total - sent)):
        write(f"step {sent} loss 0.{sent % 997:03d} lr 3e-4\\n"); flush()
        sent += 1
    ahead = begun + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
"""
FLAT_OUT = """
import sys
write = sys.stdout.write
for i in range(LINES):
    write(f"step {i} loss 0.{i % 997:03d} lr 3e-4\\n")
"""


# An installed wheel has its .pyc files; with PYTHONDONTWRITEBYTECODE set, a checkout would
# compile every agent module at each start and the import figures would measure the compiler.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def bare(argv: Sequence[str]) -> float:
    begun = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, check=True)
    return time.perf_counter() - begun


def piped(argv: Sequence[str]) -> float:
    """`argv | cat > /dev/null`: what any pipe costs, before the wrapper does anything."""
    begun = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as writer:
        subprocess.run(["cat"], stdin=writer.stdout, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - begun


def wrapped(argv: Sequence[str]) -> tuple[float, int, float]:
    """Return wall seconds, lines captured and this process's CPU seconds."""
    counted = 0

    def put(messages: Sequence[Message]) -> None:
        nonlocal counted
        counted += sum(len(m.body["outputLines"]) for m in messages)  # type: ignore[arg-type]

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    begun = time.perf_counter()
    with open(os.devnull, "wb") as sink, OutputStream(put, "k" * 32) as stream:
        result = run_child(
            argv,
            env=os.environ,
            stdout=sink,
            stderr=sink,
            on_output=lambda chunk, err: stream.feed(chunk, stderr=err),
        )
    wall = time.perf_counter() - begun
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    if result.exit_code != 0:
        raise RuntimeError(f"the command failed: {result}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return wall, counted, cpu


@dataclass(frozen=True)
class Throughput:
    """One output case: wall seconds bare, through `| cat`, and wrapped."""

    name: str
    lines: int
    bare_s: float
    piped_s: float
    wrapped_s: float
    wrapper_cpu_s: float

    @property
    def slowdown(self) -> float:
        """Wrapped over bare wall time."""
        return self.wrapped_s / self.bare_s


@dataclass(frozen=True)
class RunOverhead:
    """Start-up of run_child itself and the output cases."""

    runs: int
    bare_start_s: float
    wrapped_start_s: float  # run_child + OutputStream in this process: no CLI, no attach
    cli_import_s: float  # importing the CLI's own modules in a fresh interpreter, minus bare
    run_import_s: float  # what agent.wrap.process + agent.wrap.output add on top of that
    cases: list[Throughput]


def measure(
    runs: int = 15, paced_rate: int = 100_000, paced_s: float = 2.0, flat_lines: int = 1_000_000
) -> RunOverhead:
    """Time start-up (median of `runs`) and the paced and flat-out output cases."""
    noop = [PY, "-c", "pass"]
    bare_start = statistics.median(bare(noop) for _ in range(runs))
    wrapped_start = statistics.median(wrapped(noop)[0] for _ in range(runs))
    cli = "import agent.cli, agent.config, agent.log"
    bare(
        [PY, "-c", f"{cli}, agent.wrap.process, agent.wrap.output"]
    )  # writes the .pyc files; not counted
    cli_cost = statistics.median(bare([PY, "-c", cli]) for _ in range(runs))
    ours = f"{cli}, agent.wrap.process, agent.wrap.output"
    import_cost = statistics.median(bare([PY, "-c", ours]) for _ in range(runs)) - cli_cost
    cases = []
    paced_lines = int(paced_rate * paced_s)
    for name, code, lines in (
        (
            "paced",
            PACED.replace("RATE", str(paced_rate)).replace("SECONDS", str(paced_s)),
            paced_lines,
        ),
        ("flat out", FLAT_OUT.replace("LINES", str(flat_lines)), flat_lines),
    ):
        argv = [PY, "-c", code]
        plain = bare(argv)
        pipe = piped(argv)
        wall, counted, cpu = wrapped(argv)
        if counted != lines:
            raise RuntimeError(f"{name}: captured {counted:,} lines, expected {lines:,}")
        cases.append(Throughput(name, lines, plain, pipe, wall, cpu))
    return RunOverhead(runs, bare_start, wrapped_start, cli_cost - bare_start, import_cost, cases)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    r = measure(parser.parse_args(argv).runs)
    print(
        f"start-up  python -c pass: bare {r.bare_start_s * 1000:.1f} ms, "
        f"wrapped {r.wrapped_start_s * 1000:.1f} ms, "
        f"added {(r.wrapped_start_s - r.bare_start_s) * 1000:+.1f} ms"
    )
    print(
        f"          importing agent.wrap.process + agent.wrap.output after the CLI's own imports "
        f"({r.cli_import_s * 1000:.0f} ms): {r.run_import_s * 1000:+.1f} ms"
    )
    for c in r.cases:
        print(
            f"{c.name:9} {c.lines:,} lines: bare {c.bare_s:.2f} s, | cat {c.piped_s:.2f} s, "
            f"wrapped {c.wrapped_s:.2f} s, "
            f"slowdown {(c.wrapped_s - c.bare_s) / c.bare_s * 100:+.1f} %, "
            f"wrapper CPU {c.wrapper_cpu_s:.2f} s ({c.wrapper_cpu_s / c.wrapped_s * 100:.0f} % "
            "of a core)"
        )


if __name__ == "__main__":
    main()
