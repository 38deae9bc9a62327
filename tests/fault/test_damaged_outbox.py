"""A damaged outbox (pages overwritten): `run` and `start` go on, with what still reads sent."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from agent.delivery.outbox import Outbox
from agent.message import Message
from tests.fakes.comet_server import CometStandIn
from tests.helpers import run_agent

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000_000


def _damaged_outbox(state: Path) -> int:
    """Write 300 waiting samples to the state's outbox and wreck three of its pages."""
    state.mkdir(mode=0o700, exist_ok=True)
    path = state / "outbox.sqlite3"
    with Outbox(path) as box:
        box.put_many(
            [
                Message(
                    "log-metric-batch",
                    KEY,
                    {
                        "values": [
                            {
                                "metricName": "sys.load.avg",
                                "metricValue": n,
                                "step": None,
                                "epoch": None,
                                "context": "x" * 600,
                                "timestamp": T0 + n,
                            }
                        ]
                    },
                    T0 + n,
                )
                for n in range(300)
            ]
        )
    with path.open("r+b") as f:
        f.seek(30 * 4096)
        f.write(random.Random(7).randbytes(3 * 4096))
    return 300


def test_run_goes_on_over_a_damaged_outbox(
    agent_env: dict[str, str], server: CometStandIn, tmp_path: Path
) -> None:
    """`run` exits with the command's code, says so once, sends what could be salvaged."""
    state = Path(agent_env["COMET_AGENT_STATE_DIRECTORY"])
    _damaged_outbox(state)
    result = run_agent(["run", "--", sys.executable, "-c", "raise SystemExit(3)"], agent_env)
    assert result.returncode == 3, result.stderr  # was: 1, "start it with outbox recovery"
    events = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    corrupt = [e for e in events if e.get("event") == "outbox.corrupt"]
    assert len(corrupt) == 1 and 200 < int(corrupt[0]["salvaged"]) < 300
    assert [p.name for p in state.iterdir() if ".corrupt-" in p.name]
    old = [i for i in server.metric_items() if int(i["timestamp"]) < T0 + 300]  # type: ignore[call-overload]
    assert len(old) == int(corrupt[0]["salvaged"])  # what was kept was delivered
