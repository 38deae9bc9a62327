"""What `comet-agent run` adds before the command starts, online and offline (not a test).

Run from the repository root: ``python -m bench.startup [--runs 15]``

The command is a Python one-liner that prints ``time.monotonic_ns()`` as its
first act (CLOCK_MONOTONIC is one clock for every process on Linux). It is
started bare and through ``comet-agent run`` in the same run, alternating, so
drift in the machine's load hits both alike; "until the command runs" is the
median of (its first instant - the instant the launcher called Popen), "to
exit" the median wall time until the launcher's process ended (for the
wrapper, that includes the last sample and the flush). Online, the wrapper
creates an experiment on the loopback stand-in running in this process;
offline it writes an archive. The .pyc files are written by a first launch
that is not counted, as a pip install compiles them. Goal (issues 5 and 11):
<= 150 ms added until the command runs online, <= 2 s when Comet is unreachable
(``--comet down``: a closed port), answers errors (``errors``: 503 to everything) or
answers slowly (``slow``: 5 s per answer); the command never waits for Comet.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.comet_server import CometStandIn
from tests.helpers import agent_argv, clean_env

PY = sys.executable
STAMP = "import time; print(time.monotonic_ns(), flush=True)"
GOAL_ADDED_MS = 150.0
GOAL_FAULTY_MS = 2000.0
COMET_STATES = ("up", "down", "errors", "slow")


@dataclass(frozen=True)
class Startup:
    """Medians in ms over `runs` launches of each side."""

    mode: str  # "online", "offline", or "online, Comet <state>"
    runs: int
    bare_first_ms: float  # launch to the command's first instant, bare
    wrapped_first_ms: float  # the same through comet-agent run
    bare_exit_ms: float
    wrapped_exit_ms: float

    @property
    def added_ms(self) -> float:
        """What the wrapper adds before the command runs."""
        return self.wrapped_first_ms - self.bare_first_ms

    @property
    def added_exit_ms(self) -> float:
        """What the wrapper adds to the whole run (start, last sample, flush)."""
        return self.wrapped_exit_ms - self.bare_exit_ms


def launch(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """Return (ms until the command's first instant, ms until the launched process exits)."""
    begun = time.monotonic_ns()
    done = subprocess.run(argv, env=dict(env), capture_output=True, text=True, check=False)
    ended = time.monotonic_ns()
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {done.returncode}: {done.stderr[-2000:]}")
    first = int(done.stdout.split()[0])
    return (first - begun) / 1e6, (ended - begun) / 1e6


def measure(runs: int = 15, *, online: bool, comet: str = "up") -> Startup:
    """Launch the stamp command bare and wrapped `runs` times each, alternating; online, the
    stand-in is `comet` (see COMET_STATES)."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        extra = {"COMET_AGENT_GIT_METADATA": "false", "COMET_AGENT_GIT_PATCH": "false"}
        server = CometStandIn(api_key=None) if online else None
        try:
            if server is not None:
                server.start()
                if comet == "errors":
                    server.outage(status=503)
                elif comet == "slow":
                    server.outage(mode="slow", delay_s=5.0)
                # Headers and body go in two send()s: with Nagle on, a delayed ACK adds ~40 ms
                # to each answer, which a real server does not.
                server._httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
                extra |= {
                    "COMET_API_KEY": "b" * 32,
                    # down: a port nothing listens on (connection refused at once)
                    "COMET_URL_OVERRIDE": "http://127.0.0.1:9/clientlib/"
                    if comet == "down"
                    else server.url,
                    "COMET_WORKSPACE": "ws",
                    "COMET_PROJECT_NAME": "proj",
                }
            if comet != "up":
                # What cannot be sent goes offline at the end; no 10 s of flushing per launch.
                extra["COMET_AGENT_STOP_TIMEOUT_S"] = "1"
                extra["COMET_OFFLINE_DIRECTORY"] = str(Path(tmp) / "offline")
            env = clean_env(home, extra)
            # An installed wheel has its .pyc files (pip compiles them); a checkout run with
            # PYTHONDONTWRITEBYTECODE set would compile every agent module at each start.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            bare = [PY, "-c", STAMP]
            wrapped = [*agent_argv(), "run", *([] if online else ["--offline"]), "--", *bare]
            launch(wrapped, env)  # warms the page cache and writes the .pyc files; not counted
            sides: dict[str, list[tuple[float, float]]] = {"bare": [], "wrapped": []}
            for _ in range(runs):
                sides["bare"].append(launch(bare, env))
                sides["wrapped"].append(launch(wrapped, env))
            if server is not None and server.violations and comet == "up":
                raise RuntimeError(f"wire violations: {server.violations[:3]}")
        finally:
            if server is not None:
                server.stop()

    def median(side: str, at: int) -> float:
        return statistics.median(pair[at] for pair in sides[side])

    return Startup(
        ("online" if comet == "up" else f"online, Comet {comet}") if online else "offline",
        runs,
        median("bare", 0),
        median("wrapped", 0),
        median("bare", 1),
        median("wrapped", 1),
    )


def describe(result: Startup) -> str:
    """One line of figures."""
    goal = GOAL_ADDED_MS if result.mode in ("online", "offline") else GOAL_FAULTY_MS
    return (
        f"{result.mode:8} until the command runs: bare {result.bare_first_ms:.0f} ms, "
        f"wrapped {result.wrapped_first_ms:.0f} ms, added {result.added_ms:+.0f} ms "
        f"(goal <= {goal:.0f}); to exit: bare {result.bare_exit_ms:.0f} ms, "
        f"wrapped {result.wrapped_exit_ms:.0f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run both modes and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="launches of each side per mode")
    parser.add_argument("--mode", choices=("both", "online", "offline"), default="both")
    parser.add_argument(
        "--comet",
        choices=(*COMET_STATES, "all"),
        default="up",
        help="online: the stand-in up, down (a closed port), answering 503, or slow (5 s)",
    )
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; medians of {args.runs}")
    states = COMET_STATES if args.comet == "all" else (args.comet,)
    for online in (True, False):
        if args.mode in ("both", "online" if online else "offline"):
            for state in states if online else ("up",):
                print(describe(measure(args.runs, online=online, comet=state)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
