"""Run the installed agent on the fixture host and return its ``sample --json``, normalised.

The host is tests/fixtures/host-plain (its /proc and /sys through ``--host-root``), the
GPUs the fake NVML's three_gpus() behind the real pynvml module (nvml_shim/pynvml.py).
What must vary between runs is replaced: every timestamp by 0. Disk usage is off (it
would read this machine's file system).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.helpers import ROOT, agent_argv, clean_env

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "sample.json"
HOST = ROOT / "tests" / "fixtures" / "host-plain"
_STAMPS = {"timestamp", "timestamp_ms"}


def _normalised(value: object) -> object:
    if isinstance(value, dict):
        return {k: 0 if k in _STAMPS else _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def sample_json(home: Path | None = None) -> str:
    """The golden text: the agent's JSON sample of the fixture host, timestamps zeroed."""
    home = home or HERE / ".home"
    env = clean_env(
        home,
        {
            "PYTHONPATH": os.pathsep.join([str(HERE / "nvml_shim"), str(ROOT)]),
            "COMET_AGENT_SAMPLE_DISK": "false",
        },
    )
    done = subprocess.run(
        [*agent_argv(), "sample", "--json", "--host-root", str(HOST)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"comet-agent sample failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.dumps(_normalised(json.loads(done.stdout)), indent=2, sort_keys=True) + "\n"
