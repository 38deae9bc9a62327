"""A generated long run: 24 hours at one sample a second, written straight into an archive.

Lines are formatted directly in the archive's encoding (compact JSON, sorted
keys) because a million sends through the sink would make the test slow;
``test_generated_lines_are_the_sinks_encoding`` checks they are byte-equal.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

from agent.archive import dump_line, experiment_record
from tests.offline_run import KEY, T0

SPIKE_AT_S = 40_000  # one second of 100 % CPU: the report must not smooth it away
EVIL = "<script>alert('owned')</script> & done"


def metric_line(mid: int, stamp: int, name: str, value: float | int) -> bytes:
    """One metric_msg line, byte-equal to what the sink writes."""
    return (
        f'{{"payload":{{"local_timestamp":{stamp},"message_id":{mid},"metric":{{"epoch":null,'
        f'"metricName":"{name}","metricValue":{json.dumps(value)},"step":null}}}},'
        f'"type":"metric_msg"}}\n'
    ).encode()


def write_day(path: Path, seconds: int = 86_400, cores: int = 8, *, more: bool = False) -> Path:
    """Write an archive of `seconds` one-second samples (CPU, RAM, load, one GPU) and output.

    With `more`, also disk, network and the watched process, as `run` samples them.
    """
    mid = 0
    static = [
        {"type": "system_details", "payload": {
            "command": ["python", "train.py"], "env": None, "hostname": "gpu-node-01",
            "ip": "192.0.2.10", "machine": "x86_64", "os": "Linux-6.1.0-x86_64-with-glibc2.36",
            "os_release": "6.1.0", "os_type": "Linux", "pid": 4242, "processor": "",
            "python_exe": "/usr/bin/python3", "python_version": "3.11.7",
            "python_version_verbose": "3.11.7 (main) [GCC 12.2.0]", "user": "alice"}},
        {"type": "gpu_static_info", "payload": {"gpu_static_info": [
            {"gpu_index": 0, "name": "NVIDIA H200", "power_limit": 700_000,
             "total_memory": 150_754_820_096, "uuid": "GPU-0f0f"}]}},
        {"type": "git_metadata", "payload": {"git_metadata": {
            "branch": "refs/heads/main", "origin": "https://example.com/acme/agent.git",
            "parent": "b" * 40, "root": "a" * 40, "user": "Alice"}}},
        {"type": "installed_packages", "payload": {"installed_packages": ["psutil==7.2.2"]}},
    ]  # fmt: skip
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        stop = T0 + seconds * 1000
        zf.writestr(
            "experiment.json",
            json.dumps(
                experiment_record(
                    offline_id=KEY, workspace="ws", project="proj", start_ms=T0, stop_ms=stop
                )
            ),
        )
        typed: list[bytes] = []  # zipfile writes one member at a time: these go in after
        with zf.open("messages.json", "w") as out:
            for line in static:
                mid += 1
                line["payload"]["message_id"] = mid  # type: ignore[index]
                out.write(dump_line(line))
            chunk: list[bytes] = []
            agent: list[bytes] = []
            for s in range(seconds):
                at = T0 + s * 1000
                wave = math.sin(s / 3600 * math.pi)
                cpu = 100.0 if s == SPIKE_AT_S else round(35 + 20 * wave + (s % 7), 1)
                values = (
                    ("sys.cpu.percent.avg", cpu),
                    ("sys.ram.used", 40 * (1 << 30) + (s % 1000) * (1 << 20)),
                    ("sys.ram.total", 256 * (1 << 30)),
                    ("sys.load.avg", round(4 + 2 * wave, 2)),
                    ("sys.gpu.0.gpu_utilization", int(60 + 30 * wave)),
                    ("sys.gpu.0.used_memory", 90 * (1 << 30) + s % 4096),
                    ("sys.gpu.0.power_usage", 450_000 + (s % 60) * 1000),
                    ("sys.gpu.0.temperature", 60 + s % 15),
                )
                if more:
                    busy = s % 600 < 60  # a checkpoint every ten minutes
                    values += (
                        ("sys.disk.read_bps", 250e6 if busy else 2e6 + (s % 13) * 1e5),
                        ("sys.disk.write_bps", 400e6 if busy else 1e5),
                        ("sys.disk.root.percent.used", round(41 + s / 86_400 * 9, 2)),
                        ("sys.network.receive_bps", 80e6 + 40e6 * wave + (s % 11) * 1e6),
                        ("sys.network.send_bps", 5e6 + (s % 5) * 1e5),
                        ("sys.process.cpu_percent", round(cpu * cores * 0.9, 1)),
                        ("sys.process.rss_bytes", 12 * (1 << 30) + min(s, 3600) * (1 << 20)),
                    )
                for name, value in values:
                    mid += 1
                    chunk.append(metric_line(mid, at, name, value))
                per_core = [min(100.0, round(cpu + (c - cores / 2), 1)) for c in range(cores)]
                body = {"cpuPercentUtilization": per_core, "timestamp": at}
                entry = {
                    "after": mid,
                    "body": body,
                    "created_ms": at,
                    "endpoint": "add-cpu-metrics",
                }
                agent.append(dump_line(entry))
                if s % 10 == 0:
                    mid += 1
                    text = EVIL if s == seconds - 20 else f"step {s} loss {1 / (s + 1):.5f}"
                    chunk.append(dump_line({"type": "standard_output", "payload": {
                        "local_timestamp": at, "message_id": mid, "output": text + "\n",
                        "stderr": False}}))  # fmt: skip
                if len(chunk) >= 20_000:
                    out.write(b"".join(chunk))
                    typed.append(b"".join(agent))
                    chunk, agent = [], []
            out.write(b"".join(chunk))
            typed.append(b"".join(agent))
        zf.writestr("comet_agent.jsonl", b"".join(typed))
    return path
