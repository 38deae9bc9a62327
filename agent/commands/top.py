"""``comet-agent top``: one screen of the current sample, redrawn in place (a terminal only).

The samplers are the agent's own, read through its ``Sampling`` (``sample``
takes one reading of them; ``--host-root`` samples the mounted host); with
``--pid`` the process tree of that PID is shown too, as ``run`` and
``start --watch-pid`` sample it. When the state directory has a status
snapshot, its experiment and backlog head the screen. Nothing is sent.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Mapping

from agent import human, log
from agent.collect.base import Roots, Sample
from agent.collect.readings import CpuUsage
from agent.config import Settings
from agent.errors import UsageError
from agent.lifecycle.sampling import Sampling
from agent.lifecycle.snapshot import StatusSnapshot
from agent.lifecycle.state import read_status
from agent.message import now_ms

CLEAR = "\x1b[H\x1b[2J"


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``comet-agent top [--pid PID] [--interval S] [-n N]``."""
    if not sys.stdout.isatty():
        raise UsageError("top redraws a terminal; off one use 'comet-agent sample --json'")
    if args.interval <= 0:
        raise UsageError(f"--interval must be above 0 seconds, got {args.interval:g}")
    # What failed is shown on the screen, not logged.
    sampling = Sampling(settings, Roots.host(settings.host_root), log.RateLimiter(), one_shot=True)
    sampling.gpu(None)  # the node's GPUs, no process tree watched (build() keeps this one)
    sampling.build(args.pid)
    gpu_note = [sampling.gpu_note] if sampling.gpu_note else []
    wait = threading.Event()
    shown = 0
    try:
        _read(sampling)  # rates need a first reading to measure from
        while args.iterations <= 0 or shown < args.iterations:
            wait.wait(args.interval)
            status = read_status(settings.state_directory)
            sys.stdout.write(CLEAR + screen(_read(sampling), status, args.interval, gpu_note))
            sys.stdout.flush()
            shown += 1
    except KeyboardInterrupt:
        pass  # Ctrl-C is how top ends
    finally:
        sampling.close()
    return 0


def _read(sampling: Sampling) -> dict[str, Sample | str]:
    return {
        name: got if isinstance(got, Sample) else str(got)
        for group in ("cpu", "gpu")
        for name, got in sampling.take(group)
    }


def screen(
    samples: Mapping[str, Sample | str],
    status: StatusSnapshot | None,
    interval_s: float,
    gpu_note: list[str],
) -> str:
    """Return the text of one screen: a header, then one block per sampler in human units."""
    lines = [f"comet-agent top · {human.stamp(now_ms())} · every {interval_s:g} s · Ctrl-C quits"]
    if status is not None and status.experiment_key is not None:
        backlog = status.outbox.ready if status.outbox is not None else 0
        running = "running" if status.running else "stopped"
        lines.append(f"experiment {status.experiment_key} ({running}; backlog {backlog} messages)")
    for name, sample in samples.items():
        if isinstance(sample, str):
            lines.append(f"{name:<8} unavailable: {sample}")
            continue
        cells = [
            f"{_short(metric)} {human.metric(metric, value)}"
            for metric, value in sample.metrics.items()
            if not metric.startswith("sys.cpu.percent.") or metric.endswith(".avg")
        ]
        lines.append(f"{name:<8} " + " · ".join(cells))
        cores = next((r.percents for r in sample.readings if isinstance(r, CpuUsage)), ())
        if len(cores) > 1:
            lines.append(f"{'cores':<8} " + " ".join(f"{c:>3.0f}" for c in cores[:64]))
    if gpu_note:
        lines.append(f"{'gpu':<8} {gpu_note[0]}")
    return "\n".join(lines) + "\n"


def _short(metric: str) -> str:
    """'sys.disk.read_bps' → 'read_bps': the block's name already says disk."""
    parts = metric.split(".")
    return ".".join(parts[2:]) if len(parts) > 2 else metric
