"""deploy/slurm/train.sbatch with a stand-in srun: one agent a node, node-local state, bounded."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.helpers import ROOT, agent_argv, clean_env

SCRIPT = ROOT / "deploy" / "slurm" / "train.sbatch"
BASH = shutil.which("bash") or "/bin/bash"

# srun as Slurm runs a step: each task of it with SLURM_PROCID/SLURM_NODEID set, here every
# "node" on this machine with a TMPDIR of its own (node-local), the step's options logged.
SRUN = """#!/bin/bash
echo "srun $*" >> "$STUB_LOG"
ntasks=1
while [ $# -gt 0 ]; do
    case "$1" in
        --ntasks=*) ntasks=${1#--ntasks=} ;;
        --*) ;;
        *) break ;;
    esac
    shift
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    mkdir -p "$STUB_NODES/node$i"
    SLURM_PROCID=$i SLURM_NODEID=$i TMPDIR="$STUB_NODES/node$i" "$@" &
    pids+=($!)
done
code=0
for p in "${pids[@]}"; do wait "$p" || code=$?; done
exit $code
"""


def _env(tmp_path: Path, agent: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(SRUN)
    (bin_dir / "srun").chmod(0o755)
    (bin_dir / "comet-agent").symlink_to(agent)
    return clean_env(
        tmp_path / "home",
        {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "SLURM_JOB_ID": "4242",
            "SLURM_NNODES": "2",
            "STUB_LOG": str(tmp_path / "srun.log"),
            "STUB_NODES": str(tmp_path / "nodes"),
            "COMET_AGENT_SHARED": str(tmp_path / "shared"),
            "COMET_AGENT_KEY_WAIT_S": "20",
        },
    )


def test_one_agent_a_node_one_key_and_the_training_sees_it(tmp_path: Path) -> None:
    """Two nodes, offline: two agents with node-local state, rank 0 writes the key, the
    training gets it as COMET_EXPERIMENT_KEY, the agents stop when it ends."""
    env = _env(tmp_path, Path(agent_argv()[0]))
    seen = tmp_path / "seen-key"
    done = subprocess.run(
        [BASH, str(SCRIPT), "sh", "-c", f'echo "$COMET_EXPERIMENT_KEY" > {seen}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    key = (tmp_path / "shared" / "experiment-key").read_text().strip()
    assert len(key) == 32 and seen.read_text().strip() == key
    agents_step = (tmp_path / "srun.log").read_text().splitlines()[0]
    assert "--ntasks=2 --ntasks-per-node=1" in agents_step
    for node in ("node0", "node1"):
        assert (tmp_path / "nodes" / node / "comet-agent-4242").is_dir()  # node-local state


def test_a_failed_agent_does_not_hang_the_job(tmp_path: Path) -> None:
    """An agent that exits at once: the script stops waiting for the key and trains anyway."""
    broken = tmp_path / "broken-agent"
    broken.write_text("#!/bin/sh\necho 'agent: broken' >&2\nexit 1\n")
    broken.chmod(0o755)
    env = _env(tmp_path, broken)
    started = time.monotonic()
    done = subprocess.run(
        [BASH, str(SCRIPT), "sh", "-c", "exit 3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3  # the training's own status
    assert "training runs without it" in done.stderr
    assert time.monotonic() - started < 15  # not the 20 s bound: the agents were gone
