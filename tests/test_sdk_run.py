"""The real comet_ml SDK inside ``comet-agent run``: one experiment, nothing twice.

Each scenario runs a small training script using one SDK entry point under the
installed agent, against the stand-in with the server's experiment semantics
(add-run of a known key without get-or-create is refused with 90999, get-run of
an unknown key is refused, nothing may be written for a key before it exists).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fakes.comet_server import CometStandIn, Recorded
from tests.helpers import CANARY_KEY, run_agent

comet_ml = pytest.importorskip("comet_ml", reason="comet_ml is not installed (the test extra)")

pytestmark = pytest.mark.slow

LINES = [f"step line {n}" for n in range(3)]
TRAIN = """\
import sys, comet_ml
exp = {entry}
for step in range(3):
    print("step line %d" % step, flush=True)
    exp.log_metric("loss", 1.0 / (step + 1), step=step)
if "crash" in sys.argv:
    raise RuntimeError("boom at step 2")
exp.end()
"""
ENTRY_POINTS = {
    "Experiment": "comet_ml.Experiment()",
    "start": "comet_ml.start()",
    "ExistingExperiment": "comet_ml.ExistingExperiment()",
}
KEY_LINE = re.compile(r"comet-agent: (?:experiment|recording offline) ([0-9a-f]{32})\b")


@pytest.fixture(name="sdk_env")
def _sdk_env(env: dict[str, str], server: CometStandIn, tmp_path: Path) -> dict[str, str]:
    server.sdk_quirks = True  # the SDK's own output timestamps (wire §1.5) and asset calls
    return {
        **env,
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline"),
        "COMET_AGENT_GIT_PATCH": "false",
        "COMET_AGENT_STOP_TIMEOUT_S": "20",
    }


def _train(tmp_path: Path, entry: str) -> Path:
    script = tmp_path / "train.py"
    script.write_text(TRAIN.format(entry=entry))
    return script


def _run(script: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = run_agent(
        ["run", "--", sys.executable, str(script), *args], env, cwd=script.parent, timeout_s=120
    )
    found = KEY_LINE.search(done.stderr)
    assert found, done.stderr[-3000:]
    return done.returncode, found.group(1), done.stdout + done.stderr


def _by_agent(rec: Recorded) -> bool:
    return rec.headers.get("User-Agent", "").startswith("comet-agent/")


def _assert_one_experiment(server: CometStandIn, key: str, *, probes: bool = False) -> None:
    """One experiment; no handshake refused (`probes`: the SDK uploader's get_or_create
    tries add-run and resumes with get-run on the 90999 answer, by design)."""
    assert server.created() == [key]
    assert {r.experiment_key for r in server.requests if r.experiment_key} == {key}
    refused = [r for r in server.received("add-run", ok_only=False) if r.status != 200]
    if probes:
        assert all(r.status == 400 for r in refused)
        assert len(refused) <= server.count("get-run")
    else:
        assert refused == [], "the SDK's handshake was refused"


def _assert_nothing_twice(server: CometStandIn) -> None:
    texts = [str(line["output"]).rstrip("\n") for line in server.output_lines()]
    for line in LINES:
        assert texts.count(line) == 1, (line, texts)
    sys_sources = {
        _by_agent(rec)
        for rec in server.received("log-metric-batch")
        if any(str(i["metricName"]).startswith("sys.") for i in rec.body["values"])  # type: ignore[index]
    }
    assert sys_sources == {True}, "sys.* metrics must come from the agent alone"
    for route in ("set-system-details", "set-git-metadata", "upload-git-patch"):
        assert all(_by_agent(r) for r in server.received(route)), route
    loss = [i for i in server.metric_items() if i["metricName"] == "loss"]
    assert len(loss) == 3, "the SDK's own metrics are there"


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_joins_the_agents_experiment(
    server: CometStandIn, sdk_env: dict[str, str], tmp_path: Path, entry: str
) -> None:
    """Experiment(), start(), ExistingExperiment(): one experiment, each line once, sys.* once."""
    code, key, output = _run(_train(tmp_path, ENTRY_POINTS[entry]), sdk_env)
    assert code == 0, output[-3000:]
    assert "Run will not be logged" not in output
    _assert_one_experiment(server, key)
    _assert_nothing_twice(server)
    assert CANARY_KEY not in output


def test_a_crash_names_the_exception(
    server: CometStandIn, sdk_env: dict[str, str], tmp_path: Path
) -> None:
    """The last crash report names the exception line and the exit code; exit code kept."""
    code, key, output = _run(_train(tmp_path, ENTRY_POINTS["Experiment"]), sdk_env, "crash")
    assert code == 1, output[-3000:]
    _assert_one_experiment(server, key)
    _assert_nothing_twice(server)
    crashes = [r.body for r in server.received("update-status") if r.body["hasCrashed"]]  # type: ignore[index]
    assert crashes, "a crash report"
    last = str(crashes[-1]["error"])  # type: ignore[index]
    assert "RuntimeError: boom at step 2" in last
    assert "exit code 1" in last


def test_leave_sdk_alone_keeps_the_sdks_own_capture(
    server: CometStandIn, sdk_env: dict[str, str], tmp_path: Path
) -> None:
    """--leave-sdk-alone: the SDK's switches are not set, so it captures output itself too."""
    script = _train(tmp_path, ENTRY_POINTS["Experiment"])
    done = run_agent(
        ["run", "--leave-sdk-alone", "--", sys.executable, str(script)],
        sdk_env,
        cwd=tmp_path,
        timeout_s=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    texts = [str(line["output"]).rstrip("\n") for line in server.output_lines()]
    assert texts.count(LINES[0]) == 2  # both capture: what the default avoids


OFFLINE_TRAIN = """\
import comet_ml
exp = comet_ml.{entry}
for step in range(3):
    print("step line %d" % step, flush=True)
    exp.log_metric("loss", 1.0 / (step + 1), step=step)
exp.end()
"""


@pytest.mark.parametrize(
    ("entry", "uploader"),
    [
        ("OfflineExperiment()", "comet-agent"),
        ("start()", "comet-agent"),
        ("Experiment()", "comet-agent"),
        ("OfflineExperiment()", "comet"),
    ],
)
def test_offline_sdk_and_agent_upload_into_one_experiment(
    server: CometStandIn, sdk_env: dict[str, str], tmp_path: Path, entry: str, uploader: str
) -> None:
    """No API key: the SDK records offline too, with the agent's key; the one upload command
    the agent prints (or the SDK's own `comet upload` of the same files, in the same order)
    lands both archives in one experiment."""
    offline_env = {k: v for k, v in sdk_env.items() if k != "COMET_API_KEY"}
    offline_env["COMET_EXPERIMENT_NAME"] = "offline-name"
    script = tmp_path / "train.py"
    script.write_text(OFFLINE_TRAIN.format(entry=entry))
    code, key, output = _run(script, offline_env)
    assert code == 0, output[-3000:]
    assert server.requests == [], "an offline run sends nothing"
    archives = sorted((tmp_path / "offline").glob(f"{key}*.zip"))
    assert len(archives) == 2, (archives, output[-2000:])  # the SDK's and the agent's
    for path in archives:
        with zipfile.ZipFile(path) as zf:
            text = zf.read("messages.json").decode() if "messages.json" in zf.namelist() else ""
        assert '"ip": null' not in text
    hint = re.search(r"comet-agent upload (.+)$", output, re.MULTILINE)
    assert hint, output[-2000:]
    paths = hint.group(1).split()
    if uploader == "comet-agent":
        done = run_agent(["upload", *paths], sdk_env, timeout_s=120)
    else:
        script = shutil.which("comet", path=os.path.dirname(sys.executable))
        argv = [script] if script else [sys.executable, "-m", "comet_ml.scripts.comet"]
        done = subprocess.run(
            [*argv, "upload", *paths],
            env=sdk_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    _assert_one_experiment(server, key, probes=uploader == "comet")
    if uploader == "comet":  # the SDK's uploader replays our metrics without the typed bodies
        assert [i for i in server.metric_items() if i["metricName"] == "loss"]
        return
    _assert_nothing_twice(server)
    names = [
        r.body
        for r in server.received("log-other")
        if r.body.get("key") == "Name"  # type: ignore[union-attr]
    ]
    assert names and names[-1]["value"] == "offline-name"  # type: ignore[index]
