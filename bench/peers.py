"""Other trackers' system monitors beside the offline agent and the bare psutil loop (context).

Run from the repository root with this project's venv, naming the interpreter
that has the peers installed (keep them out of this project's venv)::

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install wandb mlflow aim clearml psutil
    python -m bench.peers --python /tmp/peers-venv/bin/python --duration-s 120

Side by side in one window, every process at 1 s: each peer's own system
monitor, offline, in a process that does nothing else; ``comet-agent start
--offline --cpu-interval 1``; and the bare psutil loop of bench/overhead.py.
Each peer runs as its documentation says, with nothing sent anywhere:

- aim: ``aim.Run(repo=<temp dir>, system_tracking_interval=1)``, terminal
  log capture off. Aim allows 0.1 s; its collector thread wakes every 0.1 s
  whatever the interval.
- wandb: ``wandb.init(mode="offline")`` with ``x_stats_sampling_interval=1``
  (0.1 s is its floor; 15 s its default), console capture, code and git off.
  Its system monitor runs outside Python, in the ``wandb-core`` service and
  its ``wandb-symon`` child: they are counted as part of the process tree.
- mlflow: ``mlflow.start_run(log_system_metrics=True)`` on a local ``file:``
  tracking URI, ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL=1`` (no floor; 10 s
  is its default). mlflow 3 refuses the file store unless
  ``MLFLOW_ALLOW_FILE_STORE=true``; it is set.
- clearml: ``Task.set_offline(True)`` then ``Task.init(...)`` with
  ``auto_resource_monitoring`` sampling and reporting every 1 s (no floor;
  the defaults sample twice a second and report every 30 s) and
  ``wait_for_first_iteration_to_start_sec=0``, without which it reports
  nothing for 180 s in a task that logs no iterations. Its reporter runs in a
  forked child: counted.

A peer whose package the interpreter cannot import is skipped, and says so.
CPU is the own user + system time of each process tree (the process, its live
descendants, and the children it reaped) over the window after a warm-up,
scaled to an hour; RSS is the tree's summed RSS, read every few seconds, its
maximum. Ratios are against the bare loop in the same window. These figures
are context, not goals: the agent's own goals are in bench/overhead.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.overhead import BARE_LOOP, MB
from tests.agent_process import AgentProcess
from tests.helpers import clean_env

INTERVAL_S = 1
PEERS = ("aim", "wandb", "mlflow", "clearml")
# The import each peer needs in the peers' interpreter; mlflow's monitor does nothing without
# psutil (it logs a warning and samples nothing), so it is checked too.
NEEDS = {
    "aim": ("aim",),
    "wandb": ("wandb",),
    "mlflow": ("mlflow", "psutil"),
    "clearml": ("clearml",),
}
# One peer, offline, doing nothing but monitor. argv: peer, interval, work dir, ready file.
# It touches the ready file once its monitor runs and ends its run cleanly when stdin closes.
PEER_PROCESS = """
import os, pathlib, sys
peer, every, work, ready = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
if peer == "aim":
    import aim
    run = aim.Run(repo=work, system_tracking_interval=every, capture_terminal_logs=False)
    stop = run.close
elif peer == "wandb":
    import wandb
    run = wandb.init(
        mode="offline", dir=work, project="bench",
        settings=wandb.Settings(
            x_stats_sampling_interval=every, console="off", save_code=False, disable_git=True
        ),
    )
    stop = run.finish
elif peer == "mlflow":
    import mlflow
    mlflow.set_tracking_uri(pathlib.Path(work, "mlruns").as_uri())
    mlflow.start_run(log_system_metrics=True)
    stop = mlflow.end_run
elif peer == "clearml":
    from clearml import Task
    Task.set_offline(True)
    task = Task.init(
        project_name="bench", task_name="bench", auto_connect_frameworks=False,
        auto_connect_arg_parser=False, auto_connect_streams=False,
        auto_resource_monitoring={
            "sample_frequency_per_sec": 1 / every, "report_frequency_sec": every,
            "first_report_sec": every, "wait_for_first_iteration_to_start_sec": 0,
        },
    )
    stop = task.close
else:
    raise SystemExit(f"unknown peer {peer}")
pathlib.Path(ready).touch()
sys.stdin.read()
stop()
"""
FIND_SPECS = (
    "import importlib.util, json, sys; "
    "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in sys.argv[1:]}))"
)


@dataclass(frozen=True)
class Usage:
    """One process tree over the window."""

    cpu_s_per_hour: float
    rss_max_mb: float
    processes: int  # the most processes the tree had at one reading


@dataclass(frozen=True)
class Peers:
    """Every tree's usage over one window, and the peers that did not run."""

    window_s: float
    interval_s: float
    python: str
    usage: Mapping[str, Usage]  # "bare", "agent" and each peer that ran
    skipped: Mapping[str, str]  # peer: why

    def ratio(self, name: str) -> str:
        """`name`'s CPU over the bare loop's, same window ("n/a" if the bare loop took no tick)."""
        bare = self.usage["bare"].cpu_s_per_hour
        if bare <= 0:  # clock ticks are 10 ms: a short window can see none
            return "n/a"
        return f"{self.usage[name].cpu_s_per_hour / bare:.2f}x"

    def note(self, name: str) -> str:
        """The figures of `name` beside the agent's and the bare loop's, in one line."""
        u, a, b = self.usage[name], self.usage["agent"], self.usage["bare"]
        procs = f" ({u.processes} processes)" if u.processes > 1 else ""
        return (
            f"{name} {u.cpu_s_per_hour:.1f} CPU s/h, RSS max {u.rss_max_mb:.0f} MB{procs}; "
            f"comet-agent offline {a.cpu_s_per_hour:.1f} CPU s/h ({self.ratio('agent')}), "
            f"{a.rss_max_mb:.0f} MB; bare loop {b.cpu_s_per_hour:.1f} CPU s/h, "
            f"{b.rss_max_mb:.0f} MB; all at {self.interval_s:g} s, {self.window_s:.0f} s window"
        )


def available(python: str, peers: Sequence[str] = PEERS) -> dict[str, str]:
    """The peers `python` cannot run, each with why."""
    modules = sorted({m for p in peers for m in NEEDS[p]})
    try:
        out = subprocess.run(
            [python, "-c", FIND_SPECS, *modules],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        found: dict[str, bool] = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        return {p: f"skipped: cannot run {python} ({type(e).__name__})" for p in peers}
    missing = {p: [m for m in NEEDS[p] if not found.get(m)] for p in peers}
    return {
        p: f"skipped: not installed ({', '.join(m)} not importable by {python})"
        for p, m in missing.items()
        if m
    }


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _tree_cpu_s(proc: psutil.Process) -> float:
    """Own CPU of the root, its reaped children and every live descendant."""
    total = 0.0
    for i, p in enumerate(_tree(proc)):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
            if i == 0:  # the root's reaped children; a descendant's own are its tree's too
                total += t.children_user + t.children_system
    return total


def _tree_rss_mb(proc: psutil.Process) -> tuple[float, int]:
    rss, count = 0.0, 0
    for p in _tree(proc):
        with contextlib.suppress(psutil.Error):
            rss += p.memory_info().rss / MB
            count += 1
    return rss, count


def _wait_ready(ready: Mapping[str, Path], procs: Mapping[str, subprocess.Popen[str]]) -> None:
    """Until every peer touched its ready file or exited; 180 s at most (imports are slow)."""
    deadline = time.monotonic() + 180
    pause = threading.Event()
    while time.monotonic() < deadline:
        if all(ready[k].exists() or procs[k].poll() is not None for k in ready):
            return
        pause.wait(0.2)


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "no output")[:200]


def measure(
    duration_s: float = 120.0,
    *,
    python: str = sys.executable,
    peers: Sequence[str] = PEERS,
    warmup_s: float = 20.0,
    rss_every_s: float = 5.0,
) -> Peers:
    """Run the peers that `python` has, the offline agent and the bare loop in one window."""
    skipped = available(python, peers)
    runnable = [p for p in peers if p not in skipped]
    if not runnable:
        return Peers(0.0, INTERVAL_S, python, {}, skipped)
    interval = str(INTERVAL_S)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        env = clean_env(home, {"COMET_AGENT_STATE_DIRECTORY": str(root / "state")})
        peer_env = {
            **env,
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "MLFLOW_ALLOW_FILE_STORE": "true",
            "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": interval,
            "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING": "1",
        }
        procs: dict[str, subprocess.Popen[str]] = {}
        ready: dict[str, Path] = {}
        logs: dict[str, Path] = {}
        agent: AgentProcess | None = None
        try:
            for peer in runnable:
                work = root / peer
                work.mkdir()
                ready[peer], logs[peer] = root / f"{peer}.ready", root / f"{peer}.log"
                with logs[peer].open("w") as log:
                    procs[peer] = subprocess.Popen(
                        [python, "-c", PEER_PROCESS, peer, interval, str(work), str(ready[peer])],
                        env={**peer_env, "HOME": str(work)},  # clearml keeps its cache there
                        cwd=work,
                        stdin=subprocess.PIPE,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
            procs["bare"] = subprocess.Popen(
                [sys.executable, "-c", BARE_LOOP, interval], env=env, text=True
            )
            agent = AgentProcess(
                ["start", "--offline", "--cpu-interval", interval, "--gpu-interval", interval],
                env,
                cwd=root,
            )
            agent.wait_for("agent.ready", timeout_s=60)
            _wait_ready(ready, procs)
            for peer in runnable:
                if not ready[peer].exists():
                    skipped[peer] = f"skipped: did not start ({_last_line(logs[peer])})"
            running = {k: psutil.Process(p.pid) for k, p in procs.items() if k not in skipped}
            running["agent"] = psutil.Process(agent.pid)
            pause = threading.Event()
            pause.wait(warmup_s)
            cpu0 = {k: _tree_cpu_s(p) for k, p in running.items()}
            rss: dict[str, list[tuple[float, int]]] = {k: [] for k in running}
            begun = time.monotonic()
            while True:
                for k, p in running.items():
                    rss[k].append(_tree_rss_mb(p))
                left = duration_s - (time.monotonic() - begun)
                if left <= 0:
                    break
                pause.wait(min(rss_every_s, left))
            cpu1 = {k: _tree_cpu_s(p) for k, p in running.items()}
            window = time.monotonic() - begun
            if procs["bare"].poll() is not None or agent.proc.poll() is not None:
                raise RuntimeError("the bare loop or the agent exited during the window")
            for peer in runnable:
                if peer in running and procs[peer].poll() is not None:
                    skipped[peer] = f"skipped: exited in the window ({_last_line(logs[peer])})"
                    del running[peer]
        finally:
            _stop(procs, agent)
    usage = {
        k: Usage(
            (cpu1[k] - cpu0[k]) / window * 3600,
            max(r for r, _ in rss[k]),
            max(n for _, n in rss[k]),
        )
        for k in running
    }
    return Peers(window, INTERVAL_S, python, usage, skipped)


def _stop(procs: Mapping[str, subprocess.Popen[str]], agent: AgentProcess | None) -> None:
    """End every run cleanly (stdin closed), then whatever of their trees is left."""
    # Listed before the roots exit: a service that outlives its parent is still ours to end.
    trees: dict[str, list[psutil.Process]] = {}
    for k, p in procs.items():
        with contextlib.suppress(psutil.Error):
            trees[k] = _tree(psutil.Process(p.pid))
    for p in procs.values():
        if p.stdin is not None:
            with contextlib.suppress(OSError):
                p.stdin.close()
    if "bare" in procs:
        procs["bare"].terminate()
    if agent is not None:
        agent.stop()
    for k, p in procs.items():
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(30)
        for child in trees.get(k, [])[1:]:
            with contextlib.suppress(psutil.Error):
                child.terminate()
                child.wait(10)


def main(argv: Sequence[str] | None = None) -> int:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter with the peers installed"
    )
    parser.add_argument("--duration-s", type=float, default=120.0, help="measured window")
    parser.add_argument("--warmup-s", type=float, default=20.0, help="not measured")
    parser.add_argument("--rss-every-s", type=float, default=5.0, help="RSS reading interval")
    parser.add_argument(
        "--peer", action="append", choices=PEERS, default=[], help="only this peer (repeatable)"
    )
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before")
    r = measure(
        args.duration_s,
        python=args.python,
        peers=args.peer or PEERS,
        warmup_s=args.warmup_s,
        rss_every_s=args.rss_every_s,
    )
    for peer, why in r.skipped.items():
        print(f"{peer}: {why}")
    if r.usage:
        print(
            f"at {r.interval_s:g} s, offline, {r.window_s:.0f} s window; ratio: CPU over the bare "
            "loop's"
        )
        print("| process | CPU s/h | ratio | RSS max MB | processes |")
        print("|---|---|---|---|---|")
        for name in ["bare", "agent", *(p for p in PEERS if p in r.usage)]:
            u = r.usage[name]
            label = {"bare": "bare psutil loop", "agent": "comet-agent --offline"}.get(name, name)
            print(
                f"| {label} | {u.cpu_s_per_hour:.1f} | {r.ratio(name)} | "
                f"{u.rss_max_mb:.1f} | {u.processes} |"
            )
    print(f"load average {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
