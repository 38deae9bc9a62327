"""comet-agent upload: archives replayed into the stand-in, once each, resumable, by the outbox."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from agent.archive import dump_line, read_archive
from agent.commands.upload import OUTBOX_FILE, command
from agent.config import Settings, load_settings
from agent.delivery.outbox import Outbox
from agent.delivery.sinks.offline import OfflineSink
from agent.message import MERGEABLE
from agent.upload.progress import Progress
from agent.upload.replay import Replay
from agent.upload.uploader import MARKER, WINDOW_MESSAGES, Uploader
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, agent_argv, clean_env, run_agent, wait_until
from tests.offline_run import KEY, T0, Msg, patch_zip, typical_messages, write_archive

SESSION = {"backend-version", "add-run", "get-run", "status-report", "offline-metadata"}


def settings_for(server: CometStandIn, tmp_path: Path, **extra: str) -> Settings:
    env = {
        "COMET_API_KEY": CANARY_KEY,
        "COMET_URL_OVERRIDE": server.url,
        "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline"),
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        **extra,
    }
    return load_settings(environ=env, home=tmp_path, cwd=tmp_path)


def args_for(
    *paths: Path, dry_run: bool = False, workspace: str | None = None
) -> argparse.Namespace:
    return argparse.Namespace(
        paths=[str(p) for p in paths], dry_run=dry_run, workspace=workspace, project_name=None
    )


def without_key(body: object) -> dict[str, object]:
    assert isinstance(body, dict)
    return {k: v for k, v in body.items() if k not in ("experimentKey", "apiKey")}


def sent_online(messages: list[Msg]) -> dict[str, list[object]]:
    """What an online run sends, per endpoint: list items flattened for batch endpoints."""
    out: dict[str, list[object]] = {}
    for endpoint, body, attachment in messages:
        if endpoint in MERGEABLE:
            out.setdefault(endpoint, []).extend(body[MERGEABLE[endpoint]])  # type: ignore[arg-type]
        else:
            out.setdefault(endpoint, []).append(attachment if attachment else body)
    return out


def received(server: CometStandIn) -> dict[str, list[object]]:
    """What the stand-in accepted, in the same shape as sent_online()."""
    out: dict[str, list[object]] = {}
    for rec in server.received():
        if rec.route in SESSION:
            continue
        if rec.route in MERGEABLE:
            out.setdefault(rec.route, []).extend(without_key(rec.body)[MERGEABLE[rec.route]])  # type: ignore[arg-type]
        elif rec.route == "upload-git-patch":
            out.setdefault(rec.route, []).append(rec.body["file"]["bytes"])  # type: ignore[index]
        else:
            out.setdefault(rec.route, []).append(without_key(rec.body))
    return out


def test_upload_replays_the_run_field_by_field(
    server: CometStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every message of the run arrives once, as the online run would have sent it."""
    messages = typical_messages(samples=3)
    archive = write_archive(tmp_path / "offline", messages).path
    assert command(args_for(), settings_for(server, tmp_path)) == 0

    expected = sent_online(messages)
    got = received(server)
    for endpoint in ("log-output",):  # offsets are re-assigned from 0 in file order
        assert [line["offset"] for line in got[endpoint]] == list(range(6))  # type: ignore[index]
    assert got == expected
    assert not archive.exists()
    assert (tmp_path / "offline" / "uploaded" / archive.name).is_file()
    out = capsys.readouterr().out
    assert f"uploaded {KEY}.zip: http://127.0.0.1:{server.port}/ws/p/{KEY}" in out
    assert "1 of 1 experiment(s) uploaded" in out


def test_handshake_and_end_follow_the_sdk_uploader(server: CometStandIn, tmp_path: Path) -> None:
    """Version, add-run (getOrCreate), alive, the data, not alive, offline-metadata with times."""
    write_archive(tmp_path / "offline", typical_messages(samples=1))
    assert command(args_for(workspace="other-ws"), settings_for(server, tmp_path)) == 0
    routes = [r.route for r in server.received()]
    assert routes[:3] == ["backend-version", "add-run", "status-report"]
    assert routes[-2:] == ["status-report", "offline-metadata"]
    add_run = without_key(server.received("add-run")[0].body)
    assert server.received("add-run")[0].experiment_key == KEY
    assert {k: v for k, v in add_run.items() if k not in ("local_timestamp", "libVersion")} == {
        "offline": True,
        "projectName": "proj",
        "teamName": "other-ws",
        "getOrCreateEnabled": True,
    }
    alive = [without_key(r.body)["is_alive"] for r in server.received("status-report")]
    assert alive == [True, False]
    meta = without_key(server.received("offline-metadata")[0].body)
    assert (meta["startTimestamp"], meta["endTimestamp"]) == (T0, T0 + 2_000)


def test_dry_run_sends_nothing(
    server: CometStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run reads and counts, and neither sends nor moves anything."""
    archive = write_archive(tmp_path / "offline", typical_messages(samples=2)).path
    assert command(args_for(archive, dry_run=True), settings_for(server, tmp_path)) == 0
    assert server.count(ok_only=False) == 0
    assert archive.exists()
    assert f"would upload {archive}: experiment {KEY}" in capsys.readouterr().out


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    """No such path: exit 2 and a one-line error naming it."""
    result = run_agent(["upload", str(tmp_path / "nope.zip")], clean_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("comet-agent: no such archive or directory:")
    assert "nope.zip" in result.stderr


def sdk_archive(path: Path) -> Path:
    """An archive as the Comet SDK writes one (wire §6.3 samples): no comet_agent.jsonl."""
    lines = [
        {"payload": {"installed_packages": ["psutil==7.2.2"], "message_id": 1},
         "type": "installed_packages"},
        {"payload": {"command": ["capture.py"], "env": None, "hostname": "vm", "ip": "127.0.0.1",
                     "machine": "x86_64", "message_id": 2, "os": "Linux", "os_release": "6.1",
                     "os_type": "Linux", "pid": 14380, "processor": "",
                     "python_exe": "/usr/bin/python3", "python_version": "3.11.7",
                     "python_version_verbose": "3.11.7 (main)", "user": "root"},
         "type": "system_details"},
        {"payload": {"local_timestamp": T0 + 3, "message_id": 3,
                     "metric": {"epoch": None, "metricName": "loss", "metricValue": 0.5,
                                "step": 1}},
         "type": "metric_msg"},
        {"payload": {"local_timestamp": T0 + 4, "message_id": 4, "output": "hello",
                     "stderr": False}, "type": "standard_output"},
        {"payload": {"additional_params": None, "clean": True, "file_path": "tmp1.zip",
                     "local_timestamp": T0 + 5, "message_id": 5, "metadata": None,
                     "upload_type": "git-patch"}, "type": "file_upload"},
    ]  # fmt: skip
    experiment = {"offline_id": "f" * 32, "project_name": "p", "workspace": "w",
                  "start_time": T0, "stop_time": T0 + 9, "tags": []}  # fmt: skip
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("experiment.json", json.dumps(experiment))
        zf.writestr("messages.json", b"".join(dump_line(line) for line in lines))
        zf.writestr("tmp1.zip", patch_zip())
    return path


def test_an_sdk_archive_is_converted_line_by_line(server: CometStandIn, tmp_path: Path) -> None:
    """Without agent lines each SDK line type maps to its endpoint (wire §6.3 table)."""
    path = sdk_archive(tmp_path / "sdk.zip")
    assert command(args_for(path), settings_for(server, tmp_path)) == 0
    got = received(server)
    assert got["set-system-details"][0] == {"installedPackages": ["psutil==7.2.2"]}
    details = got["set-system-details"][1]
    assert details["executable"] == "/usr/bin/python3" and details["osRelease"] == "6.1"  # type: ignore[index]
    assert got["log-metric-batch"] == [
        {"metricName": "loss", "metricValue": 0.5, "step": 1, "epoch": None, "context": None,
         "timestamp": T0 + 3}
    ]  # fmt: skip
    assert got["log-output"] == [
        {"stderr": False, "output": "hello", "localTimestamp": T0 + 4, "offset": 0}
    ]
    assert got["upload-git-patch"] == [patch_zip()]


def test_damaged_archive_sends_what_is_readable_and_names_the_rest(
    server: CometStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zip cut in the middle of messages.json: the lines before the cut go, the cut is named."""
    whole = write_archive(tmp_path / "made", typical_messages(samples=40)).path
    data = whole.read_bytes()
    cut = tmp_path / "offline" / whole.name
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    assert command(args_for(cut), settings_for(server, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "problem: " in out and "cut short" in out
    items = received(server)["log-metric-batch"]
    timestamps = [i["timestamp"] for i in items]  # type: ignore[index]
    assert 0 < len(items) < 160 and timestamps == sorted(timestamps)
    assert len({json.dumps(i, sort_keys=True) for i in items}) == len(items)


def test_refused_messages_fail_the_upload_and_keep_the_archive(
    server: CometStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Comet refusing data (400) is a failed upload: exit 1, archive left in place."""
    archive = write_archive(tmp_path / "offline", typical_messages(samples=1)).path
    server.outage(routes={"add-cpu-metrics"}, status=400)
    assert command(args_for(), settings_for(server, tmp_path)) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "refused 1 message(s)" in out
    assert archive.exists()


def test_progress_is_one_updating_line_on_a_terminal() -> None:
    """On a TTY the line is redrawn in place; off one each update is its own line."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = iter(float(i) for i in range(100))
    tty = Tty()
    bar = Progress(tty, clock=lambda: next(clock))
    bar.start("a.zip", 10)  # at 0 s
    bar.update(5, 12, 3_000_000)  # at 1 s: half done, so one second left
    bar.update(10, 20, 6_000_000)  # at 2 s
    bar.finish()
    assert tty.getvalue() == (
        "\r\x1b[Kuploading a.zip:  50% · 12 messages · 3.0 MB · 3.0 MB/s · 0:01 left"
        "\r\x1b[Kuploading a.zip: 100% · 20 messages · 6.0 MB · 3.0 MB/s\n"
    )
    plain = io.StringIO()
    clock2 = iter([0.0, 0.5, 1.0, 6.0])
    bar = Progress(plain, clock=lambda: next(clock2))
    bar.start("a.zip", 10)
    for position in (2, 4, 6):
        bar.update(position, position, position * 29_300)
    # The same units as the closing summary ("29.3 KB"), never "0.0 MB".
    assert plain.getvalue().splitlines() == [
        "uploading a.zip:  20% · 2 messages · 58.6 KB",
        "uploading a.zip:  60% · 6 messages · 175.8 KB · 29.3 KB/s · 0:04 left",
    ]


def test_a_window_recorded_before_a_kill_is_settled_by_the_pending_count(tmp_path: Path) -> None:
    """Marker saved, then killed before or after the put: the next start knows which."""
    settings = load_settings(environ={"COMET_API_KEY": CANARY_KEY}, home=tmp_path, cwd=tmp_path)
    for put_happened, expected_done in ((False, 10), (True, 25)):
        with Outbox(tmp_path / f"o{put_happened}.sqlite") as outbox:
            uploader = Uploader(outbox, None, settings, Progress(io.StringIO()))  # type: ignore[arg-type]
            outbox.set_state("upload:a", json.dumps({"size": 1, "done": 10}))
            marker = {"archive": "upload:a", "done": 10, "end": 25, "count": 2}
            outbox.set_state(MARKER, json.dumps({**marker, "pending_before": 0}))
            if put_happened:
                steps = list(Replay(read_archive(sdk_archive(tmp_path / "s.zip")), "f" * 32))
                outbox.put_many([s.message for s in steps[:2]])
            uploader.settle_marker()
            assert json.loads(outbox.get_state("upload:a") or "")["done"] == expected_done
            assert not outbox.get_state(MARKER)


@pytest.mark.slow
def test_killed_upload_resumes_without_duplicates(server: CometStandIn, tmp_path: Path) -> None:
    """kill -9 mid-upload, then upload again: every message arrives exactly once."""
    samples = 60
    messages = typical_messages(samples=samples)
    archive = write_archive(tmp_path / "offline", messages).path
    with read_archive(archive) as opened:
        steps = list(Replay(opened, KEY))
    assert len(steps) > WINDOW_MESSAGES  # the kill lands before the second window is enqueued
    first_window = Counter(s.message.endpoint for s in steps[:WINDOW_MESSAGES])
    first_window.pop("add-load-metrics")
    env = clean_env(
        tmp_path / "home",
        {
            "COMET_API_KEY": CANARY_KEY,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline"),
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
            "COMET_AGENT_BACKOFF_MAX_S": "1",
        },
    )
    # One endpoint fails (503) so the first window cannot finish; the rest of it is delivered.
    server.outage(routes={"add-load-metrics"}, status=503)
    proc = subprocess.Popen(
        [*agent_argv(), "upload"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def first_window_delivered() -> bool:
        failed = server.count("add-load-metrics", ok_only=False) - server.count("add-load-metrics")
        requests = Counter(r.route for r in server.received() if r.route not in SESSION)
        delivered = {e: n for e, n in requests.items() if e not in MERGEABLE}
        expected = {e: n for e, n in first_window.items() if e not in MERGEABLE}
        return failed >= 2 and delivered == expected

    try:
        wait_until(first_window_delivered, timeout_s=30)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert (tmp_path / "state" / OUTBOX_FILE).exists()
    server.recover()

    result = run_agent(["upload"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert received(server) == sent_online(messages)
    assert len(server.received("add-load-metrics")) == samples


def test_cli_upload_shows_progress_and_keeps_the_key_secret(
    server: CometStandIn, tmp_path: Path
) -> None:
    """Off a terminal: plain progress lines on stderr, the summary on stdout, no key anywhere."""
    write_archive(tmp_path / "offline", typical_messages(samples=2))
    env = clean_env(
        tmp_path / "home",
        {
            "COMET_API_KEY": CANARY_KEY,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline"),
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        },
    )
    result = run_agent(["upload"], env)
    assert result.returncode == 0, result.stderr
    assert f"uploading {KEY}.zip: 100% · 22 messages · " in result.stderr
    assert "\r" not in result.stderr
    assert result.stdout.splitlines()[-1].startswith("1 of 1 experiment(s) uploaded; sent ")
    assert CANARY_KEY not in result.stdout + result.stderr
    for path in (tmp_path / "state").iterdir():
        assert CANARY_KEY.encode() not in path.read_bytes(), path
    assert CANARY_KEY not in server.all_text()


def test_partial_directories_are_finished_first_and_live_ones_skipped(
    server: CometStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crashed run's directory is zipped and sent; one still being written is left alone."""
    offline = tmp_path / "offline"
    crashed = OfflineSink(offline, KEY, workspace="ws", project="p", start_ms=T0)
    crashed.send("log-other", KEY, {"key": "a", "value": 1}, None)
    crashed._archive.abandon()  # what kill -9 leaves: the files, no lock
    live = OfflineSink(offline, "e" * 32, workspace="ws", project="p", start_ms=T0, recover=False)
    assert command(args_for(), settings_for(server, tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"uploaded {KEY}.zip" in out
    assert f"skipped {offline / ('e' * 32 + '.partial')}: " in out
    assert "still being written by a running agent" in out
    assert [without_key(r.body) for r in server.received("log-other")] == [{"key": "a", "value": 1}]
    live.close()


def test_the_sdk_uploader_accepts_our_archive(server: CometStandIn, tmp_path: Path) -> None:
    """wire §6.4: `comet upload` (comet_ml 3.58.8) sends our archive's metrics and output."""
    pytest.importorskip(
        "comet_ml", reason="comet_ml==3.58.8 is not installed (pip install 'comet-agent[sdk]')"
    )
    messages = [m for m in typical_messages(samples=2) if m[0] != "upload-git-patch"]
    archive = write_archive(tmp_path / "offline", messages).path
    server.sdk_quirks = True  # its uploader stamps output lines with monotonic ms (wire §1.5)
    server.experiments.clear()  # the archive's experiment does not exist yet: `create` works
    env = clean_env(
        tmp_path / "home", {"COMET_API_KEY": CANARY_KEY, "COMET_URL_OVERRIDE": server.url}
    )
    script = shutil.which("comet", path=os.path.dirname(sys.executable))
    argv = [script, "upload"] if script else [sys.executable, "-m", "comet_ml.scripts.comet_upload"]
    result = subprocess.run(
        [*argv, str(archive)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    names = {item["metricName"] for item in server.metric_items()}
    assert {"sys.cpu.percent.avg", "sys.gpu.0.gpu_utilization"} <= names
    # It sends every stdout item, then every stderr item, numbering them in that order
    # (wire §3.6): the lines and their flags arrive, the interleaving is the SDK's to lose.
    got = sorted((str(line["output"]), bool(line["stderr"])) for line in server.output_lines())
    assert got == [
        ("epoch 0 <b>", False),
        ("epoch 1 <b>", False),
        ("warn\n", True),
        ("warn\n", True),
    ]


def test_an_uploaded_archive_is_not_sent_twice(
    server: CometStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Uploading the moved archive again is skipped: attaching would duplicate its data."""
    write_archive(tmp_path / "offline", typical_messages(samples=1))
    settings = settings_for(server, tmp_path)
    assert command(args_for(), settings) == 0
    sent = server.count()
    moved = tmp_path / "offline" / "uploaded" / f"{KEY}.zip"
    assert command(args_for(moved), settings) == 0
    assert server.count() == sent
    assert f"skipped {moved}: already uploaded as http://127.0.0.1:" in capsys.readouterr().out
