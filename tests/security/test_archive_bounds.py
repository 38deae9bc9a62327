"""An archive is untrusted input: `report` on a hostile one stays bounded in memory and time.

Each archive is built here the way an attacker would (a zip bomb, a line with
no end, payloads of the wrong shape, timestamps near 1e18) and `comet-agent
report` runs on it in a fresh process whose peak RSS a small wrapper reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from agent.archive import experiment_record
from tests.helpers import agent_argv, clean_env
from tests.offline_day import metric_line
from tests.offline_run import KEY, T0

# Runs the agent as its only child and prints that child's peak RSS (KiB) on the last line.
_PEAK = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stdout.write(done.stdout + done.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def _report(tmp_path: Path, archive: Path, timeout_s: float = 120) -> tuple[int, str, int, float]:
    """Run `comet-agent report ARCHIVE`; return exit status, output, peak RSS MiB, seconds."""
    out = tmp_path / "report.html"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, *agent_argv(), "report", str(archive), "-o", str(out)],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    took = time.monotonic() - started
    *text, peak = done.stdout.rstrip("\n").split("\n")
    page = out.read_text(encoding="utf-8") if out.exists() else ""
    return done.returncode, "\n".join(text) + done.stderr + page, int(peak) // 1024, took


def _experiment(**override: object) -> str:
    record = experiment_record(
        offline_id=KEY, workspace="ws", project="proj", start_ms=T0, stop_ms=T0 + 60_000
    )
    return json.dumps({**record, **override})


def test_a_zip_bomb_member_is_streamed_not_held(tmp_path: Path) -> None:
    """A ~1 MB zip holding a 1 GiB member with no newline: skipped as too long, RSS stays low."""
    archive = tmp_path / f"{KEY}.zip"
    zeros = b"0" * (1 << 20)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("experiment.json", _experiment())
        with zf.open("messages.json", "w", force_zip64=True) as fh:
            fh.write(metric_line(1, T0, "sys.cpu.percent.avg", 12.5))
            for _ in range(1024):
                fh.write(zeros)
    assert archive.stat().st_size < 4 << 20
    status, text, peak_mib, took = _report(tmp_path, archive)
    assert status == 0, text
    assert "line longer than 16 MiB: skipped" in text
    assert peak_mib < 400, f"peak RSS {peak_mib} MiB"
    assert took < 100


def test_one_huge_line_costs_linear_time(tmp_path: Path) -> None:
    """A 300 MB line with no newline (a directory archive): read once, skipped, a page made."""
    archive = tmp_path / f"{KEY}.partial"
    archive.mkdir()
    (archive / "experiment.json").write_text(_experiment())
    with (archive / "messages.json").open("wb") as fh:
        fh.write(metric_line(1, T0, "sys.cpu.percent.avg", 12.5))
        block = b"x" * (1 << 20)
        for _ in range(300):
            fh.write(block)
    status, text, peak_mib, took = _report(tmp_path, archive)
    assert status == 0, text
    assert "line longer than 16 MiB: skipped" in text
    assert took < 30, f"{took:.1f} s"  # a few seconds when linear; 41 s was the quadratic join
    assert peak_mib < 400, f"peak RSS {peak_mib} MiB"


def test_hostile_payload_shapes_and_far_timestamps_give_a_page(tmp_path: Path) -> None:
    """Lists where objects belong, 1e999, 10**400, timestamps near 1e18: a page, no crash/hang."""
    far = 10**18
    lines = [
        {"type": "metric_msg", "payload": {"metric": [1, 2], "local_timestamp": T0}},
        {"type": "metric_msg", "payload": {"local_timestamp": T0, "metric": {
            "metricName": "sys.load.avg", "metricValue": 10**400}}},
        {"type": "system_info", "payload": {"system_info": "not an object"}},
        {"type": "standard_output", "payload": {"output": ["a", "list"], "stderr": "yes"}},
        {"type": "log_other", "payload": {"key": {"a": 1}, "value": [1]}},
        {"type": "system_details", "payload": {"hostname": ["x"], "command": {"a": 1}}},
        {"type": "gpu_static_info", "payload": {"gpu_static_info": ["x", {"total_memory": "y"}]}},
        {"type": "git_metadata", "payload": {"git_metadata": [1]}},
        {"type": "installed_packages", "payload": {"installed_packages": {"a": 1}}},
        {"type": 7, "payload": {}},
        "[" * 100_000,
    ]  # fmt: skip
    raw = b"".join(
        (json.dumps(line) if isinstance(line, dict) else line).encode() + b"\n" for line in lines
    )
    raw += metric_line(2, T0, "sys.cpu.percent.avg", 10.0)
    raw += metric_line(3, far, "sys.cpu.percent.avg", 20.0)
    raw += metric_line(4, T0 + 1000, "sys.cpu.percent.avg", 1e300) + b"\n"
    raw += metric_line(5, T0 + 2000, "sys.ram.used", 1).replace(b"1,", b"1e999,")
    agent_lines = [
        {"endpoint": "add-gpu-metrics", "body": {"timestamp": T0, "gpus": ["x", {"gpuId": []}]}},
        {"endpoint": "add-cpu-metrics", "body": [1]},
        {"endpoint": "add-ram-metrics", "body": {"timestamp": far, "usedRam": 1}},
        {"endpoint": "add-load-metrics", "body": {"timestamp": 10**400, "loadAverage": 1}},
    ]
    archive = tmp_path / f"{KEY}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("experiment.json", _experiment(start_time=-far, stop_time=far))
        zf.writestr("messages.json", raw)
        zf.writestr("comet_agent.jsonl", "".join(json.dumps(a) + "\n" for a in agent_lines))
    status, text, _, took = _report(tmp_path, archive, timeout_s=60)
    assert status == 0, text
    assert "unexpected error" not in text
    assert "CPU utilisation" in text  # the sane points are drawn
    assert "timestamp out of range" in text
    assert took < 50
