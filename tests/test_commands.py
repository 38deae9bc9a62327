"""`comet-agent sysinfo` and `comet-agent sample`: what would be sent, in the wire notes' units."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers import clean_env, run_agent


def test_sysinfo_json_has_every_system_details_field(tmp_path: Path) -> None:
    """sysinfo --json shows the Set System Details body, with wire §3.3's fields and types."""
    result = run_agent(["sysinfo", "--json"], clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    details = data["system_details"]
    for name in (
        "command",
        "executable",
        "hostname",
        "machine",
        "os",
        "osRelease",
        "osType",
        "pid",
        "processor",
        "pythonVersion",
        "pythonVersionVerbose",
        "user",
        "installedPackages",
        "networkInterfaceIps",
        "logAdditionalSystemInfoList",
    ):
        assert name in details, name
    assert details["env"] is None
    assert isinstance(details["pid"], int)
    assert any(p.startswith("psutil==") for p in details["installedPackages"])
    extra = {item["key"]: item["value"] for item in details["logAdditionalSystemInfoList"]}
    assert isinstance(extra["ram_total_bytes"], int)
    assert extra["ram_total_bytes"] > 2**20
    assert extra["cgroup_cpu_view"] in ("host", "cgroup")
    assert data["git_metadata"] is None  # tmp_path is no repository
    assert any("git" in note for note in data["notes"])


def test_sysinfo_text_is_readable(tmp_path: Path) -> None:
    """Without --json: a few labelled lines, package lists counted rather than dumped."""
    result = run_agent(["sysinfo"], clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("Set System Details:\n")
    assert "installedPackages" in result.stdout
    assert " packages\n" in result.stdout


def test_sample_json_units(tmp_path: Path) -> None:
    """sample --json: CPU in percent, RAM in bytes, the typed bodies stamped like the metrics."""
    result = run_agent(["sample", "--json"], clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    samples = json.loads(result.stdout)["samples"]
    cpu, memory, load = samples["cpu"], samples["memory"], samples["load"]
    assert 0 <= cpu["metrics"]["sys.cpu.percent.avg"] <= 100
    per_cpu = cpu["typed"]["add-cpu-metrics"]["cpuPercentUtilization"]
    assert per_cpu
    assert all(isinstance(p, int) and 0 <= p <= 100 for p in per_cpu)
    assert cpu["typed"]["add-cpu-metrics"]["timestamp"] == cpu["timestamp_ms"]
    ram = memory["typed"]["add-ram-metrics"]
    assert ram["totalRam"] == memory["metrics"]["sys.ram.total"]
    assert 0 < ram["usedRam"] <= ram["totalRam"]
    assert load["metrics"]["sys.load.avg"] == load["typed"]["add-load-metrics"]["loadAverage"]
    assert "sys.network.send_bps" in samples["network"]["metrics"]  # primed, then measured
    assert json.loads(result.stdout)["gpu"]  # "on", or why not
    assert result.stderr == ""  # why the GPU is off, or a collector failed, is printed, not logged


def test_sample_text_is_in_human_units(tmp_path: Path) -> None:
    """Without --json: GiB, B/s and %, wall-clock times; no raw byte counts or epoch ms."""
    result = run_agent(["sample"], clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.search(r"sys\.ram\.total +\d+\.\d (GiB|MiB)\n", text), text
    assert re.search(r"sys\.cpu\.percent\.avg +\d+\.\d %\n", text), text
    assert re.search(r"sys\.network\.send_bps +[\d.]+ (B|kB|MB|GB)/s\n", text), text
    assert re.search(r"cpu \(at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\):", text), text
    assert not re.search(r"\b\d{10,}\b", text), text  # no epoch ms, no byte counts


def test_sysinfo_text_labels_additional_info_in_human_units(tmp_path: Path) -> None:
    """ram_total_bytes and boot_time_ms read as "RAM 23.5 GiB" and "Booted 2026-… UTC"."""
    result = run_agent(["sysinfo"], clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ram_total_bytes" not in result.stdout and "boot_time_ms" not in result.stdout
    assert re.search(r"\n  RAM +\d+\.\d GiB\n", result.stdout), result.stdout
    assert re.search(r"\n  Booted +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n", result.stdout)
