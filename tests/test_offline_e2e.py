"""Offline end to end: a run with no API key, then `comet-agent upload`, against an online run."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, clean_env, run_agent, wait_until

SESSION = {
    "create-experiment",
    "keep-alive",
    "add-run",
    "get-run",
    "status-report",
    "offline-metadata",
    "backend-version",
    "health-ping",
    "experiment-metadata",
}
# About 2.5 s: long enough for a scheduled sample (the first comes a second in) to see the
# command alive, so both runs send the process-tree metrics.
SCRIPT = (
    "import sys, time\n"
    "for i in range(6):\n"
    "    print('step', i, flush=True)\n"
    "    time.sleep(0.4)\n"
    "print('warning: done', file=sys.stderr)\n"
)
STABLE_DETAILS = ("command", "hostname", "os", "osType", "machine", "user", "pythonVersion")


def _shape(server: CometStandIn) -> dict[str, object]:
    """What a run left at Comet, without what differs between two runs of one command."""
    by_route: dict[str, list[Mapping[str, object]]] = {}
    for rec in server.received():
        if rec.route not in SESSION and isinstance(rec.body, dict):
            by_route.setdefault(rec.route, []).append(rec.body)
    lines = [(line["output"], line["stderr"]) for line in server.output_lines()]
    names = {str(i["metricName"]) for i in server.metric_items()}
    details = next(b for b in by_route["set-system-details"] if "hostname" in b)
    return {
        "routes": sorted(by_route),
        "fields": {
            route: sorted({k for b in bodies for k in b if k != "experimentKey"})
            for route, bodies in by_route.items()
        },
        "output": lines,
        "offsets": [line["offset"] for line in server.output_lines()],
        "metric_names": names,
        "details": {k: details.get(k) for k in STABLE_DETAILS},
        "exit": sorted(
            (b["key"], b["value"])
            for b in by_route["log-other"]
            if str(b["key"]) == "comet_agent.exit_code"
        ),
    }


def test_offline_then_upload_matches_an_online_run(
    server: CometStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    """The same command online, and offline then uploaded: the same endpoints and fields, the
    same output lines and offsets, the same metric names and host facts (timestamps aside)."""
    common = {"COMET_SYSTEM_CPU_INTERVAL": "1", "COMET_AGENT_GIT_PATCH": "false"}
    online_env = {**env, **common, "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "s1")}
    assert (
        run_agent(["run", "--", sys.executable, "-c", SCRIPT], online_env, cwd=tmp_path).returncode
        == 0
    )
    online = _shape(server)

    with CometStandIn(api_key=CANARY_KEY) as second:
        offline_dir = tmp_path / "offline"
        offline_env = clean_env(
            tmp_path / "home2",
            {
                **common,
                "COMET_OFFLINE_DIRECTORY": str(offline_dir),
                "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "s2"),
                "COMET_WORKSPACE": "ws",
                "COMET_PROJECT_NAME": "proj",
            },
        )
        (tmp_path / "home2").mkdir()
        result = run_agent(["run", "--", sys.executable, "-c", SCRIPT], offline_env, cwd=tmp_path)
        assert result.returncode == 0
        assert "comet-agent upload" in result.stderr
        upload_env = {**offline_env, "COMET_API_KEY": CANARY_KEY, "COMET_URL_OVERRIDE": second.url}
        uploaded = run_agent(["upload"], upload_env)
        assert uploaded.returncode == 0, uploaded.stderr + uploaded.stdout
        offline = _shape(second)
        assert second.violations == []
    assert offline["output"] == online["output"]
    assert offline["offsets"] == online["offsets"] == list(range(7))
    assert offline["details"] == online["details"]
    assert offline["exit"] == online["exit"] == [("comet_agent.exit_code", 0)]
    assert offline["metric_names"] == online["metric_names"]
    assert offline["routes"] == online["routes"]
    assert offline["fields"] == online["fields"]


def test_kill_9_offline_then_upload_sends_every_sample(
    server: CometStandIn, tmp_path: Path
) -> None:
    """An offline agent killed with SIGKILL: every sample it had queued arrives on upload."""
    home = tmp_path / "home"
    home.mkdir()
    offline_dir = tmp_path / "offline"
    env = clean_env(
        home,
        {
            "COMET_OFFLINE_DIRECTORY": str(offline_dir),
            "COMET_SYSTEM_CPU_INTERVAL": "1",
            "COMET_AGENT_LOG_LEVEL": "debug",
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
            "COMET_AGENT_GIT_PATCH": "false",
        },
    )
    agent = AgentProcess(["start"], env)
    agent.wait_for("agent.ready")
    wait_until(lambda: len(agent.samples()) >= 4, timeout_s=20)
    agent.kill()
    taken = agent.samples()
    assert list(offline_dir.glob("*.partial"))
    upload_env = {
        **env,
        "COMET_API_KEY": CANARY_KEY,
        "COMET_URL_OVERRIDE": server.url,
        "COMET_WORKSPACE": "ws",
        "COMET_PROJECT_NAME": "proj",
    }
    result = run_agent(["upload"], upload_env)
    assert result.returncode == 0, result.stderr + result.stdout
    arrived = {
        int(i["timestamp"])
        for i in server.metric_items()  # type: ignore[call-overload]
        if i["metricName"] == "sys.cpu.percent.avg"
    }
    assert set(taken) <= arrived
    cpu = [int(r.body["timestamp"]) for r in server.received("add-cpu-metrics")]  # type: ignore[index, call-overload]
    assert set(taken) <= set(cpu)
