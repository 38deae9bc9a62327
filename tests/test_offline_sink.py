"""OfflineSink: each message becomes wire §6 archive lines, flushed as it comes, zipped at close."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent.api import bodies
from agent.archive import ArchiveBusy, finalize_partial, upload_hint
from agent.delivery.sinks.offline import OfflineSink
from agent.errors import ClientError
from agent.message import Message
from tests.helpers import ROOT
from tests.offline_run import KEY, T0, patch_zip, ticking, typical_messages, write_archive
from tests.offline_spec import agent_lines, archive_lines, archive_violations


@pytest.fixture(name="archive")
def _archive(tmp_path: Path) -> Path:
    """The zip of a typical three-sample run."""
    return write_archive(tmp_path / "offline", typical_messages(samples=3)).path


def by_id(path: Path) -> dict[int, dict[str, object]]:
    return {line["payload"]["message_id"]: line for line in archive_lines(path)}  # type: ignore[index]


def test_archive_is_named_after_the_key_and_obeys_spec(archive: Path) -> None:
    """A create-strategy archive is <key>.zip, and every member and line obeys wire §6."""
    assert archive.name == f"{KEY}.zip"
    assert archive_violations(archive) == []
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == [
            "comet_agent.jsonl",
            "experiment.json",
            "git-patch-8.zip",
            "messages.json",
        ]
    assert not (archive.parent / f"{KEY}.partial").exists()


def test_experiment_json_carries_the_run_times(archive: Path) -> None:
    """experiment.json has wire §6.2's fields; start/stop come from set-start-end-time."""
    with zipfile.ZipFile(archive) as zf:
        experiment = json.loads(zf.read("experiment.json"))
    assert experiment == {
        "offline_id": KEY,
        "project_name": "proj",
        "workspace": "ws",
        "start_time": T0,
        "stop_time": T0 + 4_000,
        "tags": [],
        "resume_strategy": "create",
        "customer_error_reported": False,
        "customer_error_message": None,
        "user_provided_experiment_key": False,
        "comet_start_sourced": False,
    }


def test_metric_items_become_metric_lines_with_their_own_timestamps(archive: Path) -> None:
    """Each batch item is one metric_msg: four metric keys, its timestamp, context only if set."""
    lines = by_id(archive)
    assert [lines[i]["type"] for i in range(11, 15)] == ["metric_msg"] * 4
    assert lines[11]["payload"] == {
        "local_timestamp": T0 + 1_000,
        "message_id": 11,
        "metric": {
            "epoch": None,
            "metricName": "sys.cpu.percent.avg",
            "metricValue": 12.5,
            "step": None,
        },
    }
    assert lines[13]["payload"]["context"] == "node-1"  # type: ignore[index]
    assert lines[26]["payload"]["metric"] == {  # type: ignore[index]
        "epoch": None,
        "metricName": "sys.gpu.0.gpu_utilization",
        "metricValue": 39,
        "step": 2,
    }
    assert len(lines) == 28 and sorted(lines) == list(range(1, 29))


def test_system_details_fill_every_required_key_and_keep_the_body(archive: Path) -> None:
    """system_details has all 14 keys (ip filled with "", a string as the SDK's schema wants: its
    uploader rejects null); the body itself stays for replay."""
    line = by_id(archive)[2]
    assert line == {
        "type": "system_details",
        "payload": {
            "command": ["python", "train.py"],
            "env": None,
            "hostname": "gpu-node-01",
            "ip": "",
            "machine": "x86_64",
            "message_id": 2,
            "os": "Linux-6.1.0-x86_64-with-glibc2.36",
            "os_release": "6.1.0",
            "os_type": "Linux",
            "pid": 4242,
            "processor": "",
            "python_exe": "/usr/bin/python3",
            "python_version": "3.11.7",
            "python_version_verbose": "3.11.7 (main) [GCC 12.2.0]",
            "user": "alice",
        },
    }
    kept = [e for e in agent_lines(archive) if e["endpoint"] == "set-system-details"]
    assert kept[0]["replaces"] == [2] and kept[0]["after"] == 1
    assert "ip" not in kept[0]["body"]  # type: ignore[operator]
    assert kept[3]["replaces"] == [5, 6]
    assert kept[3]["body"]["networkInterfaceIps"] == ["127.0.0.1"]  # type: ignore[index]


def test_static_facts_map_to_their_line_types(archive: Path) -> None:
    """Packages, GPU info, system info, git, patch, cloud, file path, log-other: each its line."""
    lines = by_id(archive)
    assert lines[1] == {
        "type": "file_name",
        "payload": {"file_name": "/home/alice/train.py", "message_id": 1},
    }
    assert lines[3]["payload"] == {"installed_packages": ["psutil==7.2.2"], "message_id": 3}
    assert lines[4]["payload"] == {"message_id": 4, "os_packages": ["libc6=2.36-9"]}
    assert lines[5]["payload"]["gpu_static_info"] == [  # type: ignore[index]
        {
            "gpu_index": 0,
            "name": "NVIDIA H200",
            "power_limit": 700_000,
            "total_memory": 150_754_820_096,
            "uuid": "GPU-0",
        }
    ]
    assert lines[6]["payload"]["system_info"] == {"key": "cgroup_cpu_quota", "value": 2.5}  # type: ignore[index]
    assert lines[7]["payload"]["git_metadata"] == {  # type: ignore[index]
        "branch": "refs/heads/main",
        "origin": "https://example.com/acme/agent.git",
        "parent": "b" * 40,
        "root": "a" * 40,
        "user": "Alice",
    }
    upload = lines[8]["payload"]
    assert lines[8]["type"] == "file_upload"
    assert {k: v for k, v in upload.items() if k != "local_timestamp"} == {  # type: ignore[union-attr]
        "additional_params": None,
        "clean": True,
        "file_path": "git-patch-8.zip",
        "message_id": 8,
        "metadata": None,
        "upload_type": "git-patch",
    }
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("git-patch-8.zip") == patch_zip()
    assert lines[9]["payload"] == {
        "cloud_metadata": {"instanceType": "p5"},
        "message_id": 9,
        "provider": "AWS",
    }
    assert lines[10]["payload"] == {"key": "agent_version", "message_id": 10, "value": "0.1.0"}


def test_output_lines_become_standard_output(archive: Path) -> None:
    """Each output line is one standard_output line, stderr kept, its own epoch-ms timestamp."""
    lines = by_id(archive)
    assert lines[15]["payload"] == {
        "local_timestamp": T0 + 1_000,
        "message_id": 15,
        "output": "epoch 0 <b>",
        "stderr": False,
    }
    assert lines[16]["payload"] == {
        "local_timestamp": T0 + 1_000,
        "message_id": 16,
        "output": "warn\n",
        "stderr": True,
    }


def test_messages_without_a_line_type_go_verbatim_to_the_agent_file(archive: Path) -> None:
    """Typed metrics, start/end time and mark-not-throttled stay verbatim, in order, for replay."""
    entries = agent_lines(archive)
    verbatim = [(e["endpoint"], e["after"]) for e in entries if "replaces" not in e]
    assert verbatim == [
        ("set-start-end-time", 0),
        ("add-cpu-metrics", 14),
        ("add-ram-metrics", 14),
        ("add-load-metrics", 14),
        ("add-cpu-metrics", 20),
        ("add-ram-metrics", 20),
        ("add-load-metrics", 20),
        ("add-cpu-metrics", 26),
        ("add-ram-metrics", 26),
        ("add-load-metrics", 26),
        ("set-start-end-time", 28),
        ("mark-not-throttled", 28),
    ]
    cpu = next(e for e in entries if e["endpoint"] == "add-cpu-metrics")
    assert cpu["body"] == {"cpuPercentUtilization": [10.0, 15.0], "timestamp": T0 + 1_000}
    log_other = next(e for e in entries if e["endpoint"] == "log-other")
    assert log_other["body"] == {"key": "agent_version", "value": "0.1.0", "timestamp": T0 + 5}
    assert log_other["replaces"] == [10]


def test_session_calls_are_answered_locally_and_not_archived(tmp_path: Path) -> None:
    """Handshake and keep-alive are the uploader's business: nothing of them is written."""
    sink = write_archive(
        tmp_path,
        [
            ("status-report", {"runId": "r", "is_alive": True}, None),
            ("keep-alive", {}, None),
            ("log-other", bodies.log_other("k", 1), None),
        ],
    )
    assert [line["type"] for line in archive_lines(sink.path)] == ["log_other"]
    assert agent_lines(sink.path) == []


def test_values_json_cannot_hold_are_written_as_the_client_sends_them(tmp_path: Path) -> None:
    """NaN becomes the string 'nan' (wire §1.3); an item without a name is never written."""
    items = [
        bodies.metric_item("loss", float("nan"), T0),
        {"metricValue": 1, "timestamp": T0, "step": None, "epoch": None, "context": None},
    ]
    sink = write_archive(tmp_path, [("log-metric-batch", bodies.metric_batch(items), None)])
    lines = archive_lines(sink.path)
    assert [line["payload"]["metric"]["metricValue"] for line in lines] == ["nan"]  # type: ignore[index]
    assert archive_violations(sink.path) == []


def test_files_are_private(tmp_path: Path) -> None:
    """The partial directory is 0700 and its files 0600, the zip too."""
    sink = OfflineSink(tmp_path / "off", KEY, workspace=None, project=None, start_ms=T0)
    sink.send("log-other", KEY, bodies.log_other("k", "v"), None)
    assert stat.S_IMODE(sink.partial_path.stat().st_mode) == 0o700
    for child in sink.partial_path.iterdir():
        assert stat.S_IMODE(child.stat().st_mode) == 0o600, child
    sink.close()
    assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600


def test_other_strategies_and_taken_names_get_a_letter_suffix(tmp_path: Path) -> None:
    """get_or_create archives are <key>-<6 letters>.zip; a second create never overwrites."""
    first = write_archive(tmp_path, typical_messages(1)).path
    second = write_archive(tmp_path, typical_messages(1)).path
    third = write_archive(tmp_path, typical_messages(1), resume_strategy="get_or_create").path
    assert first.name == f"{KEY}.zip"
    for path in (second, third):
        assert path.name.startswith(f"{KEY}-") and len(path.name) == len(KEY) + 11, path.name
    assert len({first, second, third}) == 3


def test_a_batch_is_written_whole_and_each_attachment_kept_apart(tmp_path: Path) -> None:
    """send_many: metric lines numbered in order across messages; two attachments of
    messages without a line type (same batch, same millisecond) stay two files, each
    named by its own agent line."""
    sink = OfflineSink(tmp_path, KEY, workspace=None, project=None, start_ms=T0, clock=lambda: T0)
    batch = bodies.metric_batch([bodies.metric_item("sys.load.avg", 0.5, T0)])
    sink.send_many(
        [
            Message("log-metric-batch", KEY, batch, T0),
            Message("upload-asset", KEY, {"fileName": "a"}, T0, attachment=b"first"),
            Message("upload-asset", KEY, {"fileName": "b"}, T0, attachment=b"second"),
            Message("log-metric-batch", KEY, batch, T0),
        ]
    )
    sink.close()
    assert [line["payload"]["message_id"] for line in archive_lines(sink.path)] == [1, 2]  # type: ignore[index]
    entries = agent_lines(sink.path)
    with zipfile.ZipFile(sink.path) as zf:
        held = [zf.read(str(e["attachment"])) for e in entries if "attachment" in e]
    assert held == [b"first", b"second"]


def test_a_batch_with_a_stray_key_writes_nothing(tmp_path: Path) -> None:
    """One message of another experiment in a batch: ClientError, and none of it written."""
    sink = OfflineSink(tmp_path, KEY, workspace=None, project=None, start_ms=T0)
    good = Message("log-other", KEY, bodies.log_other("k", "v"), T0)
    stray = Message("log-other", "f" * 32, bodies.log_other("k", "v"), T0)
    with pytest.raises(ClientError, match="holds"):
        sink.send_many([good, stray])
    sink.close()
    assert archive_lines(sink.path) == []


def test_a_message_for_another_experiment_is_rejected(tmp_path: Path) -> None:
    """The archive holds one experiment; a stray key is a non-retryable ClientError."""
    sink = OfflineSink(tmp_path, KEY, workspace=None, project=None, start_ms=T0)
    with pytest.raises(ClientError, match="holds"):
        sink.send("log-other", "f" * 32, bodies.log_other("k", "v"), None)
    sink.close()


def test_partial_directory_is_locked_while_the_sink_writes(tmp_path: Path) -> None:
    """Recovery refuses a directory a live sink still writes, and names the fix."""
    sink = OfflineSink(tmp_path, KEY, workspace=None, project=None, start_ms=T0)
    with pytest.raises(ArchiveBusy, match="still being written"):
        finalize_partial(sink.partial_path)
    sink.close()


def test_a_restarted_run_continues_its_partial_directory(tmp_path: Path) -> None:
    """Same key after a crash: same start time, message ids go on, one archive in the end."""
    first = OfflineSink(tmp_path, KEY, workspace="ws", project="p", start_ms=T0, clock=ticking())
    first.send("log-other", KEY, bodies.log_other("a", 1), None)
    first._archive.abandon()  # what a crash leaves: files written, lock released
    second = OfflineSink(
        tmp_path, KEY, workspace="ws", project="p", start_ms=T0 + 50_000, clock=ticking(T0 + 50_000)
    )
    second.send("log-other", KEY, bodies.log_other("b", 2), None)
    second.close()
    lines = archive_lines(second.path)
    assert [(ln["payload"]["message_id"], ln["payload"]["key"]) for ln in lines] == [  # type: ignore[index]
        (1, "a"),
        (2, "b"),
    ]
    with zipfile.ZipFile(second.path) as zf:
        assert json.loads(zf.read("experiment.json"))["start_time"] == T0


def test_upload_hint_names_the_archive_and_the_command(tmp_path: Path) -> None:
    """The daemon's last line says where the archive is and how to upload it."""
    path = tmp_path / "my runs" / f"{KEY}.zip"
    assert upload_hint(path) == (
        f"comet-agent: offline archive written to '{path}'; "
        f"upload it with: comet-agent upload '{path}'"
    )


_WRITER = """
import sys
from pathlib import Path
from agent.api import bodies
from agent.delivery.sinks.offline import OfflineSink
key = sys.argv[2]
sink = OfflineSink(Path(sys.argv[1]), key, workspace="ws", project="p", start_ms=1_700_000_000_000)
sink.send("upload-git-patch", key, {}, bytes.fromhex(sys.argv[3]))
i = 1
while True:
    i += 1
    item = bodies.metric_item("sys.cpu.percent.avg", float(i), 1_700_000_000_000 + i)
    sink.send("log-metric-batch", key, bodies.metric_batch([item]), None)
    print(i, flush=True)
"""


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_already_written(tmp_path: Path) -> None:
    """kill -9 while writing: recovery zips every line written before the kill, each valid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), KEY, patch_zip().hex()],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acknowledged = 0
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    acknowledged = max([acknowledged, *(int(x) for x in proc.stdout.read().split())])
    proc.stdout.close()

    # The next agent start (any key) recovers it.
    other = OfflineSink(tmp_path, "f" * 32, workspace=None, project=None, start_ms=T0)
    other.close()
    (done,) = other.recovered
    assert done.path == tmp_path / f"{KEY}.zip"
    assert all("torn last line" in p.why for p in done.problems), done.problems
    ids = [line["payload"]["message_id"] for line in archive_lines(done.path)]
    assert ids == list(range(1, len(ids) + 1))
    assert len(ids) >= acknowledged
    assert archive_violations(done.path) == []
    assert not (tmp_path / f"{KEY}.partial").exists()
