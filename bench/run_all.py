"""Every benchmark in one go, each beside its baseline from the same run, as a Markdown table.

Run from the repository root: ``python -m bench [--quick] [--overhead-s 300]
[--peers-python /tmp/peers-venv/bin/python]`` (also ``python -m bench.run_all``).
The table goes to stdout and to
``bench/RESULTS.md`` (``--output`` to change): ratios first, then the
absolute figures, then the machine they were measured on, with its load
average before and after, since the machine may be shared. ``--quick`` runs
short sizes, for a smoke test: its figures are noisy. Benchmarks are not
tests: nothing here fails on a timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    client_cost,
    drain,
    nvml_cost,
    overhead,
    peers,
    report_day,
    run_overhead,
    sample_cost,
    startup,
    upload_requests,
)

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does."""

    sample_iterations: int
    sample_rounds: int
    overhead_s: float
    overhead_warmup_s: float
    overhead_rss_every_s: float
    drain_messages: int
    drain_single_puts: int
    run_runs: int
    paced_rate: int
    paced_s: float
    flat_lines: int
    startup_runs: int
    report_seconds: int
    client_requests: int = 300
    upload_seconds: int = 1800
    peers_python: str = ""  # the interpreter that has the peers installed; "" is this one


FULL = Sizes(2000, 5, 300.0, 15.0, 5.0, 100_000, 10_000, 15, 100_000, 2.0, 1_000_000, 15, 86_400)
QUICK = Sizes(200, 2, 20.0, 5.0, 2.0, 5_000, 1_000, 5, 20_000, 0.5, 100_000, 3, 3_600, 50, 300)


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    measure: str
    ratio: str  # against the baseline (or the goal where there is none)
    against: str
    goal: str
    met: str  # "yes", "no" or "" where there is no goal
    figures: str


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


def sampling_rows(sizes: Sizes) -> list[Row]:
    """One full sample of every system sampler against the bare psutil calls."""
    r = sample_cost.measure(sizes.sample_iterations, sizes.sample_rounds)
    ours, bare = r.total(r.ours_ms, process=False), r.total(r.bare_ms, process=False)
    ours_all = r.total(r.ours_ms)
    return [
        Row(
            "sampling cost, one full sample (all but the process tree)",
            f"{r.ratio:.2f}x",
            "the same psutil calls",
            "≤ 1.3x and ≤ 2 ms in all",
            _met(r.ratio <= 1.3 and ours_all <= 2.0),
            f"ours {ours:.3f} ms, bare {bare:.3f} ms; process tree: ours "
            f"{r.ours_ms['process']:.3f} ms, psutil children() {r.bare_ms['process']:.3f} ms; "
            f"all {ours_all:.3f} ms ({r.samples} samples a side, {r.processes} processes)",
        )
    ]


def nvml_rows(sizes: Sizes) -> list[Row]:
    """One GPU sample of 1 and 8 fake GPUs (0.5 ms a call) against a bare NVML loop."""
    rows = []
    for gpus in (1, 8):
        r = nvml_cost.measure(gpus, max(5, sizes.sample_rounds * 4), 0.0005)
        rows.append(
            Row(
                f"NVML cost, one sample of {gpus} GPU(s)",
                f"{r.ratio:.2f}x per call",
                "bare pynvml calls (memory, utilisation, power, temperature)",
                "well under 1 s for 8 GPUs",
                _met(r.ours_ms < 1000),
                f"ours {r.ours_ms:.1f} ms in {r.ours_calls:.0f} calls; bare {r.bare_ms:.1f} ms "
                f"in {r.bare_calls:.0f} calls; two PCIe throughput calls a GPU (the old way) "
                f"alone {r.old_pcie_ms:.0f} ms",
            )
        )
    return rows


def overhead_rows(sizes: Sizes) -> list[Row]:
    """comet-agent start at 1 s: offline against a bare psutil loop, online against a
    requests.Session loop making the same requests, all in one window."""
    r = overhead.measure(
        sizes.overhead_s,
        warmup_s=sizes.overhead_warmup_s,
        rss_every_s=sizes.overhead_rss_every_s,
    )
    a, b, o, loop = r.agent, r.bare, r.offline, r.loop
    if o is None or loop is None or r.offline_ratio is None or r.loop_ratio is None:
        raise RuntimeError("the offline agent and the requests loop run in every window")
    window = f"{r.window_s:.0f} s window"
    agent_rpm = sum(r.agent_per_min.values())
    routes = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.agent_per_min.items()))
    return [
        Row(
            "agent CPU at 1 s, offline (sampling and archive; no HTTP)",
            f"{r.offline_ratio:.2f}x",
            "bare psutil loop, same readings",
            f"≤ {overhead.GOAL_OFFLINE_RATIO:g}x",
            _met(r.offline_ratio <= overhead.GOAL_OFFLINE_RATIO),
            f"offline agent {o.cpu_s_per_hour:.1f} CPU s/h, bare {b.cpu_s_per_hour:.1f} "
            f"CPU s/h ({window})",
        ),
        Row(
            "agent CPU at 1 s, online",
            f"{r.loop_ratio:.2f}x",
            "requests.Session loop making the agent's requests",
            f"≤ {overhead.GOAL_CPU_RATIO:g}x",
            _met(r.loop_ratio <= overhead.GOAL_CPU_RATIO),
            f"agent {a.cpu_s_per_hour:.1f} CPU s/h, loop {loop.cpu_s_per_hour:.1f} CPU s/h, "
            f"bare psutil loop {b.cpu_s_per_hour:.1f} ({window}, {r.cpu_samples} CPU samples)",
        ),
        Row(
            "requests per minute at 1 s, online",
            f"{agent_rpm / max(r.loop_per_min, 1e-9):.2f}x",
            "the same requests loop",
            "",
            "",
            f"agent {agent_rpm:.0f}/min ({routes}); loop {r.loop_per_min:.0f}/min",
        ),
        Row(
            "agent RSS, offline",
            f"{o.rss_max_mb / b.rss_max_mb:.2f}x",
            "bare psutil loop",
            f"≤ {overhead.GOAL_RSS_MB:.0f} MB",
            _met(o.rss_max_mb <= overhead.GOAL_RSS_MB),
            f"offline max {o.rss_max_mb:.1f} MB; online max {a.rss_max_mb:.1f} MB; bare max "
            f"{b.rss_max_mb:.1f} MB; requests loop max {loop.rss_max_mb:.1f} MB",
        ),
        Row(
            "agent RSS growth over the run",
            f"{a.slope_mb_per_hour:+.2f} MB/h",
            f"bare loop {b.slope_mb_per_hour:+.2f} MB/h",
            f"≤ {overhead.GOAL_GROWTH_MB:.0f} MB/h",
            _met(max(a.slope_mb_per_hour, o.slope_mb_per_hour) <= overhead.GOAL_GROWTH_MB),
            f"online {a.growth_mb:+.2f} MB, offline {o.growth_mb:+.2f} MB "
            f"(slope {o.slope_mb_per_hour:+.2f} MB/h) over {r.window_s:.0f} s, "
            f"{len(a.rss_mb)} readings (a short window makes the slope noisy)",
        ),
    ]


def client_rows(sizes: Sizes) -> list[Row]:
    """Client CPU per request against requests' defaults and the stacks below it."""
    r = client_cost.measure(sizes.client_requests, 3)
    others = ", ".join(f"{k} {v:.3f} ms" for k, v in r.ms.items())
    return [
        Row(
            "client CPU per request (metric batch, loopback)",
            f"{r.ratio:.2f}x",
            "requests.Session with its defaults",
            f"≤ {client_cost.GOAL_RATIO:g}x",
            _met(r.ratio <= client_cost.GOAL_RATIO),
            f"{others} ({r.requests} requests a side, medians of 3 rounds)",
        )
    ]


def upload_rows(sizes: Sizes) -> list[Row]:
    """Requests `upload` makes for a 1 s archive."""
    r = upload_requests.measure(sizes.upload_seconds)
    per = ", ".join(
        f"{k} {v}" for k, v in sorted(r.by_route.items(), key=lambda kv: -kv[1]) if v > 1
    )
    span = f"{r.seconds / 60:g} min"
    return [
        Row(
            f"upload of a {span} archive at 1 sample/s: requests",
            f"{r.total / r.seconds:.2f}/s of run",
            "one request per sampled second",
            "",
            "",
            f"{r.total} requests ({per}); {r.metric_values:,} metric values in "
            f"{r.by_route.get('log-metric-batch', 0)} batches; a typed body holds one "
            f"reading, so add-cpu-metrics stays one per second",
        )
    ]


def drain_rows(sizes: Sizes) -> list[Row]:
    """Outbox write and drain rates."""
    r = drain.measure(sizes.drain_messages, 10, sizes.drain_single_puts)
    return [
        Row(
            "outbox write, put_many(1000)",
            f"{r.write_rate / 20_000:.2f}x",
            "the goal",
            "≥ 20,000 msg/s",
            _met(r.write_rate >= 20_000),
            f"{r.write_rate:,.0f} msg/s; put_many(5) {r.single_puts / r.per_sample_s:,.0f} "
            f"msg/s; put {r.single_puts / r.single_s:,.0f} msg/s ({r.messages:,} messages)",
        ),
        Row(
            "outbox drain into the stand-in",
            f"{r.drain_rate / 1_000:.2f}x",
            "the goal",
            "≥ 1,000 msg/s",
            _met(r.drain_rate >= 1_000 and r.drained and not r.violations),
            f"{r.drain_rate:,.0f} msg/s, {r.requests / r.drain_s:,.0f} req/s, "
            f"{r.sent / max(r.requests, 1):.1f} msg/request; drained={r.drained}, "
            f"{len(r.violations)} wire violations",
        ),
    ]


def wrapper_rows(sizes: Sizes) -> list[Row]:
    """`comet-agent run`: start-up until the command runs, and output throughput."""
    rows = []
    for online in (True, False):
        s = startup.measure(sizes.startup_runs, online=online)
        rows.append(
            Row(
                f"run start-up until the command runs, {s.mode}",
                f"{s.added_ms:+.0f} ms",
                "bare `python -c`",
                f"≤ {startup.GOAL_ADDED_MS:.0f} ms added",
                _met(s.added_ms <= startup.GOAL_ADDED_MS),
                f"bare {s.bare_first_ms:.0f} ms, wrapped {s.wrapped_first_ms:.0f} ms; to exit "
                f"bare {s.bare_exit_ms:.0f} ms, wrapped {s.wrapped_exit_ms:.0f} ms "
                f"(medians of {s.runs})",
            )
        )
    r = run_overhead.measure(sizes.run_runs, sizes.paced_rate, sizes.paced_s, sizes.flat_lines)
    for c in r.cases:
        rows.append(
            Row(
                f"run output, {c.name}",
                f"{c.slowdown:.2f}x",
                "bare, output to /dev/null",
                "",
                "",
                f"{c.lines:,} lines: bare {c.bare_s:.2f} s, `| cat` {c.piped_s:.2f} s, "
                f"wrapped {c.wrapped_s:.2f} s, wrapper CPU {c.wrapper_cpu_s:.2f} s",
            )
        )
    return rows


def report_rows(sizes: Sizes) -> list[Row]:
    """comet-agent report on a generated archive."""
    r = report_day.measure(sizes.report_seconds)
    span = f"{r.seconds / 3600:g} h" if r.seconds >= 3600 else f"{r.seconds / 60:g} min"
    return [
        Row(
            f"report of a {span} archive at 1 sample/s",
            f"{r.load_s + r.render_s:.2f} s",
            "",
            "",
            "",
            f"load {r.load_s:.2f} s, render {r.render_s:.2f} s; {r.lines:,} lines, "
            f"{r.zipped_bytes / 1e6:.1f} MB zipped, page {r.page_bytes / 1e6:.2f} MB",
        )
    ]


def sdk_rows(sizes: Sizes) -> list[Row]:
    """The comet_ml SDK's own system monitor, when the optional SDK is installed."""
    if importlib.util.find_spec("comet_ml") is None:
        return [
            Row(
                "agent CPU vs the comet_ml SDK's system monitor",
                "skipped",
                "comet_ml OfflineExperiment, same interval",
                "",
                "",
                "comet_ml is not importable here; `pip install -e '.[sdk]'` adds this baseline",
            )
        ]
    from bench import sdk_monitor

    r = sdk_monitor.measure(sizes.overhead_s, warmup_s=sizes.overhead_warmup_s)
    return [
        Row(
            "agent CPU vs the comet_ml SDK's system monitor",
            f"{r.ratio:.2f}x",
            "comet_ml OfflineExperiment, same interval",
            "",
            "",
            r.note,
        )
    ]


def peers_rows(sizes: Sizes) -> list[Row]:
    """Other trackers' system monitors, offline at 1 s, beside the agent: context, no goal."""
    r = peers.measure(
        sizes.overhead_s,
        python=sizes.peers_python or sys.executable,
        warmup_s=sizes.overhead_warmup_s,
        rss_every_s=sizes.overhead_rss_every_s,
    )
    against = f"bare psutil loop at {peers.INTERVAL_S} s, same run"
    rows = []
    for peer in peers.PEERS:
        measure = f"{peer}'s system monitor at {peers.INTERVAL_S} s, offline (context)"
        if peer in r.usage:
            rows.append(Row(measure, r.ratio(peer), against, "", "", r.note(peer)))
        else:
            why = r.skipped[peer]
            rows.append(
                Row(
                    measure,
                    "skipped",
                    against,
                    "",
                    "",
                    f"{why}; `--peers-python` names an interpreter that has it (bench/peers.py)",
                )
            )
    return rows


BENCHMARKS: dict[str, Callable[[Sizes], list[Row]]] = {
    "sampling": sampling_rows,
    "nvml": nvml_rows,
    "overhead": overhead_rows,
    "client": client_rows,
    "upload": upload_rows,
    "drain": drain_rows,
    "wrapper": wrapper_rows,
    "report": report_rows,
    "sdk": sdk_rows,
    "peers": peers_rows,
}


@dataclass(frozen=True)
class Machine:
    """Where the figures were measured."""

    cpu: str
    cores: int
    ram_gib: float
    kernel: str
    python: str
    commit: str


def machine() -> Machine:
    """Describe this machine."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return Machine(
        cpu,
        os.cpu_count() or 0,
        psutil.virtual_memory().total / 2**30,
        f"{platform.system()} {platform.release()}",
        platform.python_version(),
        commit,
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(
    rows: Sequence[Row], where: Machine, load: tuple[float, float], *, mode: str, took_s: float
) -> str:
    """The Markdown page: the table, then the machine."""
    head = ["measure", "ratio", "against (same run)", "goal", "met", "figures"]
    lines = [
        f"# comet-agent benchmarks ({mode})",
        "",
        f"`python -m bench{' --quick' if mode == 'quick' else ''}`, "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC, commit {where.commit}, "
        f"{took_s:.0f} s in all.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        cells = (r.measure, r.ratio, r.against, r.goal, r.met, r.figures)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += [
        "",
        f"Machine: {where.cpu}, {where.cores} cores, {where.ram_gib:.1f} GiB RAM, "
        f"{where.kernel}, Python {where.python}. Load average (1 min) "
        f"{load[0]:.2f} before, {load[1]:.2f} after.",
    ]
    if mode == "quick":
        lines += [
            "",
            "Quick mode: short runs, noisy figures; run `python -m bench` for the real ones.",
        ]
    return "\n".join(lines) + "\n"


def run(
    sizes: Sizes,
    *,
    mode: str,
    only: Sequence[str] = (),
    on_row: Callable[[Row], None] | None = None,
) -> str:
    """Run every benchmark (or those named in `only`); return the Markdown page."""
    where = machine()
    before = os.getloadavg()[0]
    started = time.monotonic()
    rows: list[Row] = []
    for name, bench in BENCHMARKS.items():
        if only and name not in only:
            continue
        for row in bench(sizes):
            rows.append(row)
            if on_row is not None:
                on_row(row)
    after = os.getloadavg()[0]
    return render(rows, where, (before, after), mode=mode, took_s=time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, print the table and write it to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument(
        "--overhead-s",
        type=float,
        help="measured window of the agent-vs-bare-loop run (full: 300; 1800 for issue 7's "
        "30-minute RSS growth)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        default=[],
        help="run only this benchmark (repeat for more)",
    )
    parser.add_argument(
        "--peers-python",
        default="",
        help="the interpreter with aim, wandb, mlflow and clearml installed, for the peers rows "
        "(default: this one; keep them out of this project's venv)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    sizes = dataclasses.replace(sizes, peers_python=args.peers_python)
    if args.overhead_s is not None:
        sizes = dataclasses.replace(sizes, overhead_s=args.overhead_s)
    mode = "quick" if args.quick else "full"
    print(f"running the benchmarks ({mode}); each row prints as it is done", file=sys.stderr)
    page = run(
        sizes,
        mode=mode,
        only=args.only,
        on_row=lambda r: print(f"  {r.measure}: {r.ratio}", file=sys.stderr),
    )
    args.output.write_text(page)
    print(page, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
