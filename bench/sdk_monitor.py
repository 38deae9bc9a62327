"""The comet_ml SDK's own system monitor as another baseline (needs the optional SDK).

Run from the repository root: ``python -m bench.sdk_monitor [--duration-s 300]``
(``pip install -e '.[sdk]'`` first).

The SDK will not sample more often than every 10 s (its data loggers clamp
``comet.system_cpu_interval`` and friends to at least 10; the default is 30),
so this compares at 10 s, three processes side by side in one window: an
``OfflineExperiment`` that does nothing but exist (its system monitor on:
CPU, network, disk, GPU where there is one), ``comet-agent start --offline``
at 10 s, and the bare psutil loop at 10 s. Both sides write an offline
archive, so neither pays for HTTP. CPU is each process's own user + system
time over the window after a warm-up, scaled to an hour; the headline is the
agent's over the SDK's. At 10 s the bare loop uses about one 10 ms clock tick a
minute: its figure is only indicative unless the window is long.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.overhead import BARE_LOOP
from tests.agent_process import AgentProcess
from tests.helpers import clean_env

INTERVAL_S = 10  # the SDK's floor
SDK_PROCESS = """
import os, sys, threading
import comet_ml
experiment = comet_ml.OfflineExperiment(
    project_name="bench", workspace="bench", offline_directory=os.environ["BENCH_SDK_DIR"],
    log_code=False, log_graph=False, auto_param_logging=False, auto_metric_logging=False,
    auto_output_logging=False, log_git_metadata=False, log_git_patch=False, parse_args=False,
    display_summary_level=0,
)
print("ready", flush=True)
threading.Event().wait(float(sys.argv[1]))
experiment.end()
"""


@dataclass(frozen=True)
class SdkMonitor:
    """CPU seconds an hour of the three processes over one window."""

    window_s: float
    interval_s: float
    sdk_cpu_s_per_hour: float
    agent_cpu_s_per_hour: float
    bare_cpu_s_per_hour: float
    sdk_rss_mb: float
    agent_rss_mb: float

    @property
    def ratio(self) -> float:
        """Agent over SDK, same interval, both offline: the headline."""
        return self.agent_cpu_s_per_hour / max(self.sdk_cpu_s_per_hour, 1e-9)

    @property
    def note(self) -> str:
        """The absolute figures in one line."""
        return (
            f"at {self.interval_s:g} s (the SDK's floor), both offline: agent "
            f"{self.agent_cpu_s_per_hour:.1f} CPU s/h, SDK {self.sdk_cpu_s_per_hour:.1f} CPU s/h, "
            f"bare loop {self.bare_cpu_s_per_hour:.1f} CPU s/h (clock ticks are 10 ms: a "
            f"short window rounds it); RSS agent {self.agent_rss_mb:.0f} MB, SDK "
            f"{self.sdk_rss_mb:.0f} MB; {self.window_s:.0f} s window"
        )


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(duration_s: float = 300.0, *, warmup_s: float = 15.0) -> SdkMonitor:
    """Run the SDK, the offline agent and the bare loop side by side for `duration_s`."""
    interval = str(INTERVAL_S)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = clean_env(home, {"COMET_AGENT_STATE_DIRECTORY": str(Path(tmp) / "state")})
        sdk_env = {
            **env,
            "BENCH_SDK_DIR": str(Path(tmp) / "sdk"),
            "COMET_SYSTEM_CPU_INTERVAL": interval,
            "COMET_SYSTEM_GPU_INTERVAL": interval,
            "COMET_SYSTEM_NETWORK_INTERVAL": interval,
            "COMET_SYSTEM_DISK_INTERVAL": interval,
            "COMET_DISABLE_ANNOUNCEMENT": "1",
        }
        lifetime = str(warmup_s + duration_s + 120)
        sdk = subprocess.Popen(
            [sys.executable, "-c", SDK_PROCESS, lifetime],
            env=sdk_env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        bare = subprocess.Popen([sys.executable, "-c", BARE_LOOP, interval], env=env)
        agent = AgentProcess(
            ["start", "--offline", "--cpu-interval", interval, "--gpu-interval", interval],
            env,
            cwd=Path(tmp),
        )
        try:
            assert sdk.stdout is not None  # noqa: S101 - piped above
            if sdk.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the SDK process did not start (exit {sdk.wait(30)})")
            agent.wait_for("agent.ready", timeout_s=60)
            pause = threading.Event()
            pause.wait(warmup_s)
            procs = {
                "sdk": psutil.Process(sdk.pid),
                "agent": psutil.Process(agent.pid),
                "bare": psutil.Process(bare.pid),
            }
            cpu0 = {k: _cpu_s(p) for k, p in procs.items()}
            begun = time.monotonic()
            pause.wait(duration_s)
            window = time.monotonic() - begun
            cpu1 = {k: _cpu_s(p) for k, p in procs.items()}
            rss = {k: p.memory_info().rss / 2**20 for k, p in procs.items()}
        finally:
            for proc in (sdk, bare):
                proc.terminate()
                proc.wait(30)
            if sdk.stdout is not None:
                sdk.stdout.close()
            agent.stop()

    def per_hour(k: str) -> float:
        return (cpu1[k] - cpu0[k]) / window * 3600

    return SdkMonitor(
        window,
        INTERVAL_S,
        per_hour("sdk"),
        per_hour("agent"),
        per_hour("bare"),
        rss["sdk"],
        rss["agent"],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=300.0, help="measured window")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="not measured")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before")
    r = measure(args.duration_s, warmup_s=args.warmup_s)
    print(f"agent over SDK monitor: {r.ratio:.2f}x")
    print(r.note)
    print(f"load average {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
