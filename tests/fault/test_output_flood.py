"""An output flood through `comet-agent run`: the wrapper's memory stays within its 64 MB cap.

The wrapper runs inside the training job's cgroup: 270 MB of output once took it past 800 MB.
Peak RSS (VmHWM) of the wrapper, against a same-run baseline of a quiet command.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import CANARY_KEY, agent_argv, clean_env

CAP_KB = 64 * 1024  # the documented cap on output held (agent.wrap.output max_pending_bytes)
SLACK_KB = 16 * 1024  # allocator slack and the interpreter's own growth


def _flood(megabytes: int, width: int) -> str:
    return (
        "import sys\n"
        f"block = (b'x' * {width - 1} + b'\\n') * (1_000_000 // {width})\n"
        f"for _ in range({megabytes}):\n"
        "    sys.stdout.buffer.write(block)\n"
    )


def _peak_kb(tmp_path: Path, megabytes: int, width: int) -> tuple[int, int]:
    """Run the flood; return the wrapper's peak RSS in kB and its exit status."""
    env = clean_env(
        tmp_path / "home",
        {
            "COMET_API_KEY": CANARY_KEY,
            "COMET_OFFLINE": "true",
            "COMET_OFFLINE_DIRECTORY": str(tmp_path / f"offline-{megabytes}-{width}"),
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / f"state-{megabytes}-{width}"),
        },
    )
    argv = [*agent_argv(), "run", "--", sys.executable, "-c", _flood(megabytes, width)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = Path(f"/proc/{proc.pid}/status")
    peak, deadline = 0, time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass  # exited between poll() and the read
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    return peak, proc.wait()


def test_a_flood_of_output_keeps_the_wrapper_under_its_cap(tmp_path: Path) -> None:
    """100 MB of long lines, 24 MB of 10-byte ones (a gigabyte held, uncapped): peak RSS under
    baseline + 64 MB; exit 0."""
    baseline, code = _peak_kb(tmp_path, 0, 200)
    assert code == 0 and baseline > 0
    for width in (10, 200):
        peak, code = _peak_kb(tmp_path, 100 if width == 200 else 24, width)
        assert code == 0, width
        assert peak < baseline + CAP_KB + SLACK_KB, (width, peak, baseline)


def test_output_held_while_the_outbox_cannot_be_written_is_capped_in_bytes(
    tmp_path: Path,
) -> None:
    """A failing outbox (disk full): 100 MB of output messages put, at most 32 MB held."""
    from agent.config import Settings
    from agent.delivery.outbox import Outbox
    from agent.delivery.pipeline import PENDING_MAX_BYTES, Delivery
    from agent.message import Kind, Message

    box = Outbox(tmp_path / "outbox.sqlite")
    delivery = Delivery(box, sink=None, settings=Settings())  # type: ignore[arg-type]
    box.close()  # every write fails from here on, as on a full disk
    lines = [{"output": "x" * 999 + "\n", "offset": 0}] * 500
    message = Message("log-output", "k" * 32, {"outputLines": lines}, 1, Kind.OUTPUT)
    for _ in range(4):
        assert delivery.put([message] * 50) is False
    held = delivery.held
    assert 0 < held * len(message.encoded_body()) <= PENDING_MAX_BYTES, held
