"""The daemon's CPU and memory at 1 s intervals, against a bare psutil loop (not a test).

Run from the repository root: ``python -m bench.overhead [--duration-s 300]``
(``--duration-s 1800`` gives issue 7's 30-minute RSS growth figure).

Side by side, in the same time window: ``comet-agent start`` (a real
subprocess) attached to the loopback stand-in, which answers every keep-alive
with 1 s beat, CPU and GPU intervals; and a bare Python loop doing the same
readings once a second with psutil (cpu_percent per CPU, virtual_memory,
getloadavg, disk_usage, disk_io_counters, net_io_counters) and printing
nothing; and, unless ``--no-offline``, the same agent recording an offline
archive at 1 s, which tells the cost of sampling from that of delivery.
After a warm-up (the facts sent once, the first samples), each
process's own CPU time (user + system, from /proc/<pid>/stat through psutil)
is read at the start and the end of the window and scaled to an hour; RSS is
read every few seconds: start, end, max and the least-squares slope.
A fourth process, the issue's online baseline, makes the agent's requests at
1 s (keep-alive, one metric batch, cpu/ram/load posts) with a plain
``requests.Session`` to the same stand-in; the stand-in's records give each
side's requests per minute.
Goals: offline agent CPU <= 2x the bare loop's and RSS <= 30 MB; online agent
CPU <= 1.2x the requests loop's; RSS growth <= 1 MB/h.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import clean_env

MB = 1024 * 1024
ONE_SECOND = {
    "isAliveBeatDurationMillis": 1000,
    "cpuMonitorIntervalMillis": 1000,
    "gpuMonitorIntervalMillis": 1000,
}
GOAL_CPU_RATIO = 1.2  # online agent over the requests loop making the same requests
GOAL_OFFLINE_RATIO = 2.0  # offline agent over the bare psutil loop
GOAL_RSS_MB = 30.0  # offline agent
GOAL_GROWTH_MB = 1.0  # per hour
BARE_LOOP = """
import os, sys, threading, psutil
every = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
tick = threading.Event()
psutil.cpu_percent(interval=None, percpu=True)
while not tick.wait(every - (psutil.time.time() % every)):
    psutil.cpu_percent(interval=None, percpu=True)
    psutil.virtual_memory()
    os.getloadavg()
    psutil.disk_usage("/")
    psutil.disk_io_counters()
    psutil.net_io_counters()
"""
# The online baseline: the bare loop's readings, and the requests the agent makes at
# 1 s sent by a plain requests.Session (defaults, keep-alive): the keep-alive GET, one metric
# batch and the three typed posts, each second, to the same stand-in. URLs and headers are the
# agent's own (CometClient.prepare); the bodies are plain JSON.
REQUESTS_LOOP = """
import json, os, sys, threading, time, psutil, requests
from agent.api import bodies
from agent.api.client import CometClient
url, key = sys.argv[1], sys.argv[2]
client = CometClient(api_key="b" * 32, url_override=url)
session = requests.Session()
tick = threading.Event()
psutil.cpu_percent(interval=None, percpu=True)
def post(endpoint, body):
    p = client.prepare(endpoint, body, experiment_key=key)
    data = None if p.json_body is None else json.dumps(p.json_body).encode()
    session.request(p.method, p.url, data=data, headers=dict(p.headers)).content
while not tick.wait(1.0 - (time.time() % 1.0)):
    now = int(time.time() * 1000)
    per_cpu = psutil.cpu_percent(interval=None, percpu=True)
    mem = psutil.virtual_memory()
    load = os.getloadavg()
    psutil.disk_usage("/")
    psutil.disk_io_counters()
    psutil.net_io_counters()
    post("keep-alive", None)
    items = [bodies.metric_item("sys.cpu.percent.avg", sum(per_cpu) / len(per_cpu), now),
             bodies.metric_item("sys.ram.used", mem.used, now),
             bodies.metric_item("sys.ram.total", mem.total, now),
             bodies.metric_item("sys.load.avg", load[0], now)]
    post("log-metric-batch", bodies.metric_batch(items))
    post("add-cpu-metrics", bodies.cpu_metrics(per_cpu, now))
    post("add-ram-metrics", bodies.ram_metrics(mem.total, mem.used, now))
    post("add-load-metrics", bodies.load_metrics(load[0], now))
"""


@dataclass(frozen=True)
class Usage:
    """One process over the measured window."""

    cpu_s_per_hour: float
    rss_mb: list[float]  # one reading every few seconds
    rss_at_s: list[float]  # seconds into the window of each reading

    @property
    def rss_start_mb(self) -> float:
        """RSS at the start of the window."""
        return self.rss_mb[0]

    @property
    def rss_end_mb(self) -> float:
        """RSS at the end of the window."""
        return self.rss_mb[-1]

    @property
    def rss_max_mb(self) -> float:
        """The highest RSS read."""
        return max(self.rss_mb)

    @property
    def growth_mb(self) -> float:
        """End minus start."""
        return self.rss_end_mb - self.rss_start_mb

    @property
    def slope_mb_per_hour(self) -> float:
        """Least-squares slope of RSS over the window, scaled to an hour."""
        n = len(self.rss_mb)
        if n < 2:
            return 0.0
        mean_t = sum(self.rss_at_s) / n
        mean_r = sum(self.rss_mb) / n
        num = sum(
            (t - mean_t) * (r - mean_r) for t, r in zip(self.rss_at_s, self.rss_mb, strict=True)
        )
        den = sum((t - mean_t) ** 2 for t in self.rss_at_s)
        return num / den * 3600 if den else 0.0


@dataclass(frozen=True)
class Overhead:
    """The agent (online, and offline when asked) and the bare loop over the same window."""

    window_s: float
    agent: Usage
    bare: Usage
    cpu_samples: int  # add-cpu-metrics requests the stand-in accepted in the window
    offline: Usage | None = None  # the same agent recording an archive: sampling without HTTP
    loop: Usage | None = None  # the requests.Session loop making the agent's requests
    agent_per_min: dict[str, float] = field(default_factory=dict)  # agent's requests by route
    loop_per_min: float = 0.0  # the requests loop's requests a minute

    @property
    def loop_ratio(self) -> float | None:
        """Agent CPU over the requests loop's."""
        if self.loop is None:
            return None
        return self.agent.cpu_s_per_hour / max(self.loop.cpu_s_per_hour, 1e-9)

    @property
    def cpu_ratio(self) -> float:
        """Online agent CPU over bare-loop CPU."""
        return self.agent.cpu_s_per_hour / max(self.bare.cpu_s_per_hour, 1e-9)

    @property
    def offline_ratio(self) -> float | None:
        """Offline agent CPU over bare-loop CPU."""
        if self.offline is None:
            return None
        return self.offline.cpu_s_per_hour / max(self.bare.cpu_s_per_hour, 1e-9)


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _rss_mb(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / MB


def measure(
    duration_s: float = 300.0,
    *,
    warmup_s: float = 15.0,
    rss_every_s: float = 5.0,
    with_offline: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> Overhead:
    """Run the agent and the bare loop side by side; return their figures over `duration_s`.

    `with_offline` also runs ``start --offline --cpu-interval 1 --gpu-interval 1`` in the
    same window: the same sampling into an archive, without HTTP, which tells sampling from
    delivery. `extra_env` adds agent settings (``COMET_AGENT_TYPED_ENDPOINTS=false``).
    """
    with tempfile.TemporaryDirectory() as tmp, CometStandIn(api_key=None) as server:
        # Headers and body go in two send()s: with Nagle on, a delayed ACK adds ~40 ms to each
        # answer, which a real server does not.
        server._httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        server.keepalive_default = dict(ONE_SECOND)
        home = Path(tmp) / "home"
        home.mkdir()
        env = clean_env(home, extra_env)
        online_env = {
            **env,
            "COMET_API_KEY": "b" * 32,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_WORKSPACE": "ws",
            "COMET_PROJECT_NAME": "proj",
            "COMET_AGENT_STATE_DIRECTORY": str(Path(tmp) / "state-online"),
        }
        offline_env = {**env, "COMET_AGENT_STATE_DIRECTORY": str(Path(tmp) / "state-offline")}
        bare = subprocess.Popen([sys.executable, "-c", BARE_LOOP], env=env)
        loop_key = "c" * 32
        server.register(loop_key)  # the loop makes no experiment: the server knows it already
        loop = subprocess.Popen(
            [sys.executable, "-c", REQUESTS_LOOP, server.url, loop_key],
            env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        agents = {"agent": AgentProcess(["start"], online_env, cwd=Path(tmp))}
        if with_offline:
            agents["offline"] = AgentProcess(
                ["start", "--offline", "--cpu-interval", "1", "--gpu-interval", "1"],
                offline_env,
                cwd=Path(tmp),
            )
        try:
            for agent in agents.values():
                agent.wait_for("agent.ready", timeout_s=60)
            pause = threading.Event()
            pause.wait(warmup_s)
            for agent in agents.values():
                if agent.proc.poll() is not None:
                    raise RuntimeError(f"an agent ended in the warm-up:\n{agent.stderr[-2000:]}")
            if bare.poll() is not None:
                raise RuntimeError("the bare loop ended in the warm-up")
            procs = {k: psutil.Process(a.pid) for k, a in agents.items()}
            procs["bare"] = psutil.Process(bare.pid)
            procs["loop"] = psutil.Process(loop.pid)
            cpu0 = {k: _cpu_s(p) for k, p in procs.items()}
            rss: dict[str, list[float]] = {k: [] for k in procs}
            at: list[float] = []
            begun = time.monotonic()
            counted_from = len(server.received("add-cpu-metrics"))
            seen_from = len(server.requests)
            while True:
                now = time.monotonic() - begun
                at.append(now)
                for k, p in procs.items():
                    rss[k].append(_rss_mb(p))
                if now >= duration_s:
                    break
                pause.wait(min(rss_every_s, duration_s - now))
            window = time.monotonic() - begun
            cpu1 = {k: _cpu_s(p) for k, p in procs.items()}
            samples = sum(
                r.experiment_key != loop_key
                for r in server.received("add-cpu-metrics")[counted_from:]
            )
            seen = list(server.requests[seen_from:])
        finally:
            for baseline in (bare, loop):
                baseline.terminate()
                baseline.wait(10)
            for agent in agents.values():
                agent.stop()
        if server.violations:
            raise RuntimeError(f"wire violations: {server.violations[:3]}")

    def usage(k: str) -> Usage:
        return Usage((cpu1[k] - cpu0[k]) / window * 3600, rss[k], at)

    agent_per_min: dict[str, float] = {}
    loop_count = 0
    for rec in seen:
        if rec.experiment_key == loop_key:
            loop_count += 1
        else:
            agent_per_min[rec.route] = agent_per_min.get(rec.route, 0.0) + 60 / window
    return Overhead(
        window,
        usage("agent"),
        usage("bare"),
        samples,
        usage("offline") if with_offline else None,
        usage("loop"),
        agent_per_min,
        loop_count * 60 / window,
    )


def describe(result: Overhead) -> list[str]:
    """Lines of figures, the goals beside them."""
    a, b, o = result.agent, result.bare, result.offline
    lines = [
        f"window {result.window_s:.0f} s; the stand-in took {result.cpu_samples} CPU samples "
        f"({result.cpu_samples / result.window_s:.2f}/s)",
        f"CPU s/hour: agent {a.cpu_s_per_hour:.1f}, bare loop {b.cpu_s_per_hour:.1f}, "
        f"ratio {result.cpu_ratio:.2f}",
    ]
    if o is not None:
        lines.append(
            f"CPU s/hour: offline agent (no HTTP) {o.cpu_s_per_hour:.1f}, "
            f"ratio {result.offline_ratio:.2f} (goal <= {GOAL_OFFLINE_RATIO})"
        )
    if result.loop is not None:
        lines.append(
            "CPU s/hour: requests loop making the agent's requests "
            f"{result.loop.cpu_s_per_hour:.1f}"
            f", agent/loop {result.loop_ratio:.2f} (goal <= {GOAL_CPU_RATIO})"
        )
        total = sum(result.agent_per_min.values())
        routes = ", ".join(f"{k} {v:.0f}" for k, v in sorted(result.agent_per_min.items()))
        lines.append(f"requests/min: agent {total:.0f} ({routes}); loop {result.loop_per_min:.0f}")
    named = [("agent", a), ("offline agent", o), ("bare loop", b), ("requests loop", result.loop)]
    for name, u in named:
        if u is None:
            continue
        lines.append(
            f"RSS {name}: start {u.rss_start_mb:.1f} MB, end {u.rss_end_mb:.1f} MB, "
            f"max {u.rss_max_mb:.1f} MB, growth {u.growth_mb:+.2f} MB, "
            f"slope {u.slope_mb_per_hour:+.2f} MB/h"
        )
    lines.append(
        f"goals: offline agent RSS <= {GOAL_RSS_MB:.0f} MB, growth <= {GOAL_GROWTH_MB:.0f} MB/h"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=300.0, help="measured window")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="not measured")
    parser.add_argument("--rss-every-s", type=float, default=5.0, help="RSS reading interval")
    parser.add_argument(
        "--no-offline",
        dest="with_offline",
        action="store_false",
        help="leave out the offline agent (sampling without HTTP) run in the same window",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra agent setting"
    )
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before")
    result = measure(
        args.duration_s,
        warmup_s=args.warmup_s,
        rss_every_s=args.rss_every_s,
        with_offline=args.with_offline,
        extra_env=dict(item.split("=", 1) for item in args.env),
    )
    for line in describe(result):
        print(line)
    print(f"load average {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
