"""Typed builders for the bodies the agent sends: the one place Comet's camelCase names appear.

Units follow docs/comet-wire.md: bytes for memory, percent 0-100 for utilisation,
milliwatts for power, integer ms since the epoch for every timestamp.
Optional fields that are None are left out, as the SDK leaves them out
(wire §3.8), except where the wire notes show explicit nulls (metric batch items,
set-start-end-time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.collect.readings import GpuUsage

Number = int | float


def _timing(
    timestamp_ms: int | None,
    context: str | None,
    step: int | None = None,
    epoch: int | None = None,
) -> dict[str, object]:
    out: dict[str, object] = {}
    if context is not None:
        out["context"] = context
    if step is not None:
        out["step"] = step
    if epoch is not None:
        out["epoch"] = epoch
    if timestamp_ms is not None:
        out["timestamp"] = timestamp_ms
    return out


def metric_item(
    name: str,
    value: Number | str,
    timestamp_ms: int,
    *,
    context: str | None = None,
    step: int | None = None,
    epoch: int | None = None,
) -> dict[str, object]:
    """One item of the metric batch: all six keys present, nulls explicit (wire §3.9)."""
    return {
        "metricName": name,
        "metricValue": value,
        "step": step,
        "epoch": epoch,
        "context": context,
        "timestamp": timestamp_ms,
    }


def metric_batch(items: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """Body of ``log-metric-batch``."""
    return {"values": list(items)}


def cpu_metrics(
    percents: Sequence[Number], timestamp_ms: int, context: str | None = None
) -> dict[str, object]:
    """Body of ``add-cpu-metrics``: one percentage (0-100) per logical CPU, in CPU order."""
    return {"cpuPercentUtilization": list(percents), **_timing(timestamp_ms, context)}


def ram_metrics(
    total_bytes: int, used_bytes: int, timestamp_ms: int, context: str | None = None
) -> dict[str, object]:
    """Body of ``add-ram-metrics`` (bytes)."""
    return {"totalRam": total_bytes, "usedRam": used_bytes, **_timing(timestamp_ms, context)}


def load_metrics(
    load_1m: float, timestamp_ms: int, context: str | None = None
) -> dict[str, object]:
    """Body of ``add-load-metrics``: the 1-minute load average."""
    return {"loadAverage": load_1m, **_timing(timestamp_ms, context)}


def gpu_metrics(
    gpus: Sequence[GpuUsage], timestamp_ms: int, context: str | None = None
) -> dict[str, object]:
    """Body of ``add-gpu-metrics``: memory in bytes, utilisation as an int percent."""
    return {
        "gpus": [
            {
                "gpuId": g.gpu_id,
                "freeMemory": g.free_bytes,
                "usedMemory": g.used_bytes,
                "totalMemory": g.total_bytes,
                "gpuUtilization": g.utilization_percent,
            }
            for g in gpus
        ],
        **_timing(timestamp_ms, context),
    }


def output_line(text: str, *, stderr: bool, offset: int, timestamp_ms: int) -> dict[str, object]:
    """One item of ``log-output``'s outputLines (epoch ms in localTimestamp, wire §1.5 REC)."""
    return {"stderr": stderr, "output": text, "localTimestamp": timestamp_ms, "offset": offset}


def output(lines: Sequence[Mapping[str, object]], context: str | None = None) -> dict[str, object]:
    """Body of ``log-output``."""
    return {"outputLines": list(lines), "runContext": context}


def start_end_time(start_ms: int | None, end_ms: int | None) -> dict[str, object]:
    """Body of ``set-start-end-time``: both keys always present (wire §3.10)."""
    return {"startTimeMillis": start_ms, "endTimeMillis": end_ms}


def log_other(key: str, value: object, timestamp_ms: int | None = None) -> dict[str, object]:
    """Body of ``log-other``."""
    return {"key": key, "value": value, **_timing(timestamp_ms, None)}


def git_metadata(
    *,
    user: str | None,
    root: str | None,
    branch: str | None,
    parent: str | None,
    origin: str | None,
) -> dict[str, object]:
    """Body of ``set-git-metadata`` (wire §3.5)."""
    return {"user": user, "root": root, "branch": branch, "parent": parent, "origin": origin}


def cloud_details(
    provider: str, *, instance_type: str, region: str | None = None, zone: str | None = None
) -> dict[str, object]:
    """Body of ``set-cloud-details``: the provider and its instance's metadata (wire §3.4)."""
    metadata: dict[str, object] = {"instanceType": instance_type}
    if region is not None:
        metadata["region"] = region
    if zone is not None:
        metadata["zone"] = zone
    return {"provider": provider, "metadata": metadata}


def update_status(*, alive: bool, error: str | None, crashed: bool) -> dict[str, object]:
    """Body of ``update-status``, how a crashed run is reported (wire §3.10 REC)."""
    return {"isAlive": alive, "error": error, "hasCrashed": crashed}


def create_experiment(
    workspace: str | None, project: str | None, name: str | None
) -> dict[str, object]:
    """Body of ``create-experiment``."""
    body: dict[str, object] = {"workspaceName": workspace, "projectName": project}
    if name:
        body["experimentName"] = name
    return body


_SYSTEM_DETAILS_FIELDS = {
    "command": "command",
    "env": "env",
    "executable": "executable",
    "hostname": "hostname",
    "ip": "ip",
    "machine": "machine",
    "os": "os",
    "os_release": "osRelease",
    "os_type": "osType",
    "pid": "pid",
    "processor": "processor",
    "python_version": "pythonVersion",
    "python_version_verbose": "pythonVersionVerbose",
    "user": "user",
    "installed_packages": "installedPackages",
    "os_packages": "osPackages",
    "network_interface_ips": "networkInterfaceIps",
    "additional": "logAdditionalSystemInfoList",
    "gpu_static_info": "gpuStaticInfoList",
}


def system_details(**fields: object) -> dict[str, object]:
    """Body of ``set-system-details`` from snake_case fields; unknown names raise TypeError.

    ``additional`` is a list of ``{"key", "value"}`` objects; ``gpu_static_info``
    a list of snake_case GPU dicts sent verbatim, as the live SDK does (wire §3.3 REC).
    """
    body: dict[str, object] = {}
    for name, value in fields.items():
        if name not in _SYSTEM_DETAILS_FIELDS:
            raise TypeError(f"system_details() got an unknown field {name!r}")
        body[_SYSTEM_DETAILS_FIELDS[name]] = value
    return body
