"""What the run wrapper's process side adds: start-up time and throughput loss.

Runs each case bare (the command's stdout and stderr on /dev/null) and through
run_child + OutputStream (the passthrough on /dev/null, a put that only
counts, so this measures the wrapper and not the network), in the same run:

* start-up: `python -c pass`, median of N runs; and what importing
  agent.run + agent.output adds to the CLI's own imports in a fresh interpreter;
* paced: a writer of 100,000 lines/s for 2 s, each line its own write();
* flat out: a writer of 1,000,000 lines as fast as it can (block-buffered).

Throughput cases also run as `COMMAND | cat > /dev/null`: the cost of any pipe.

usage: python bench/run_overhead.py [--runs N]
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

from agent.message import Message
from agent.output import OutputStream
from agent.run import run_child

PY = sys.executable
PACED = """
import sys, time
rate, seconds = 100_000, 2.0
write, flush = sys.stdout.write, sys.stdout.flush
begun = time.monotonic()
sent = 0
while sent < rate * seconds:
    for _ in range(1000):
        write(f"step {sent} loss 0.{sent % 997:03d} lr 3e-4\\n"); flush()
        sent += 1
    ahead = begun + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
"""
FLAT_OUT = """
import sys
write = sys.stdout.write
for i in range(1_000_000):
    write(f"step {i} loss 0.{i % 997:03d} lr 3e-4\\n")
"""


def bare(argv: Sequence[str]) -> float:
    begun = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
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
        raise SystemExit(f"the command failed: {result}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return wall, counted, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs

    noop = [PY, "-c", "pass"]
    bare_start = statistics.median(bare(noop) for _ in range(runs))
    wrapped_start = statistics.median(wrapped(noop)[0] for _ in range(runs))
    cli = "import agent.cli, agent.config, agent.log"
    cli_cost = statistics.median(bare([PY, "-c", cli]) for _ in range(runs))
    ours = f"{cli}, agent.run, agent.output"
    import_cost = statistics.median(bare([PY, "-c", ours]) for _ in range(runs)) - cli_cost
    print(
        f"start-up  python -c pass: bare {bare_start * 1000:.1f} ms, "
        f"wrapped {wrapped_start * 1000:.1f} ms, "
        f"added {(wrapped_start - bare_start) * 1000:+.1f} ms"
    )
    print(
        f"          importing agent.run + agent.output after the CLI's own imports "
        f"({(cli_cost - bare_start) * 1000:.0f} ms): {import_cost * 1000:+.1f} ms"
    )

    for name, code, lines in (("paced", PACED, 200_000), ("flat out", FLAT_OUT, 1_000_000)):
        argv = [PY, "-c", code]
        plain = bare(argv)
        pipe = piped(argv)
        wall, counted, cpu = wrapped(argv)
        if counted != lines:
            raise SystemExit(f"{name}: captured {counted:,} lines, expected {lines:,}")
        print(
            f"{name:9} {lines:,} lines: bare {plain:.2f} s, | cat {pipe:.2f} s, "
            f"wrapped {wall:.2f} s, "
            f"slowdown {(wall - plain) / plain * 100:+.1f} %, "
            f"wrapper CPU {cpu:.2f} s ({cpu / wall * 100:.0f} % of a core)"
        )


if __name__ == "__main__":
    main()
