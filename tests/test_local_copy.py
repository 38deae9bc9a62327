"""local_copy: an online agent also keeps what it sends, so `report` can draw it while it runs."""

from __future__ import annotations

import zipfile
from pathlib import Path

from agent.report.data import load
from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, run_agent, wait_until


def _sent_cpu_stamps(server: CometStandIn) -> list[int]:
    """Timestamps of every sys.cpu.percent.avg item the stand-in accepted."""
    return sorted(
        item["timestamp"]
        for r in server.received("log-metric-batch")
        for item in r.body["values"]  # type: ignore[index]
        if item["metricName"] == "sys.cpu.percent.avg"
    )


def test_report_draws_a_running_online_agent_and_its_copy_after(
    env: dict[str, str], home: Path, server: CometStandIn, tmp_path: Path
) -> None:
    """`status` names the live copy and the state directory leads `report` to it; after stop
    the copy is a zip in online/, holding exactly the CPU samples Comet received, without the
    key; `upload` with no PATH leaves it alone (it was sent live)."""
    state = home / "state" / "comet-agent"
    copies = home / "data" / "comet-agent" / "online"
    agent = AgentProcess(["start", "--local-copy", "--cpu-interval", "1"], env, cwd=tmp_path)
    ready = agent.wait_for("agent.ready")
    key = str(ready["experiment_key"])
    wait_until(lambda: len(_sent_cpu_stamps(server)) >= 2, timeout_s=20)

    shown = run_agent(["status"], env).stdout
    assert f"archive     {copies / (key + '.partial')} (local copy)" in shown
    live = run_agent(["report", str(state), "-o", str(tmp_path / "live.html")], env)
    assert live.returncode == 0, live.stderr
    assert f"report of {copies / (key + '.partial')} written" in live.stdout
    assert "<figcaption>CPU utilisation</figcaption>" in (tmp_path / "live.html").read_text()

    assert agent.stop() == 0
    (archive,) = copies.glob(f"{key}*.zip")  # wire §6.1: the SDK's name, a random suffix
    assert load(archive).series["sys.cpu.percent.avg"].times.tolist() == _sent_cpu_stamps(server)
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            assert CANARY_KEY.encode() not in zf.read(name), name

    after = run_agent(["report", "-o", str(tmp_path / "after.html")], env)
    assert after.returncode == 0, after.stderr
    assert f"report of {archive} written" in after.stdout
    upload = run_agent(["upload", "--dry-run"], env)
    assert key not in upload.stdout + upload.stderr
    assert archive.is_file()


def test_report_on_an_online_agent_without_a_copy_says_how_to_get_one(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """No local copy: exit 2 and one line naming --local-copy."""
    agent = AgentProcess(["start"], env, cwd=tmp_path)
    agent.wait_for("agent.ready")
    state = home / "state" / "comet-agent"
    result = run_agent(["report", str(state), "-o", str(tmp_path / "r.html")], env)
    assert agent.stop() == 0
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"comet-agent: the agent on {state} keeps no archive: it sends online without a local "
        "copy; start it with --local-copy (or [comet] local_copy = true) to draw its runs"
    )


def test_an_unwritable_copy_directory_does_not_stop_sending(
    env: dict[str, str], server: CometStandIn, tmp_path: Path
) -> None:
    """The copy cannot be made (its directory is a file): one warning, and samples still go."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {**env, "COMET_OFFLINE_DIRECTORY": str(blocker), "COMET_AGENT_LOCAL_COPY": "true"}
    agent = AgentProcess(["start", "--cpu-interval", "1"], env, cwd=tmp_path)
    agent.wait_for("agent.ready")
    wait_until(lambda: len(_sent_cpu_stamps(server)) >= 1, timeout_s=20)
    assert agent.stop() == 0
    (warning,) = agent.named("local_copy.unavailable")
    assert warning["directory"] == str(blocker / "online")
