"""Helpers shared by the tests: running the CLI, waiting with a deadline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# A distinctive API key: tests assert it never shows up anywhere but the Authorization header.
CANARY_KEY = "CANARYk3yZ9q7Xw2Lm4Pv8Rt6Yu1"
# Experiment keys tests pass by hand: the stand-in fixture knows them as existing experiments.
TEST_KEYS = (
    "0123456789abcdef0123456789abcdef",
    "ffde77396b55408887078ab27afb14fe",
    *(c * 32 for c in "aefkp"),
    *(c * 40 for c in "9ab"),
)


def wait_until(
    predicate: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.02
) -> None:
    """Poll `predicate` until it is true, or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def agent_argv() -> list[str]:
    """The command that starts the installed agent."""
    script = shutil.which("comet-agent", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "agent"]


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment with no Comet settings of the developer's, HOME in a temp dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("COMET_", "XDG_", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET")
        )
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def run_agent(
    args: list[str],
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    timeout_s: float = 60,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the agent in a subprocess and return what it did."""
    return subprocess.run(
        [*agent_argv(), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        input=input_text,
        check=False,
    )
