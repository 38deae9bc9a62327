"""The tests' own reading of wire §6 (offline archives), independent of agent.archive.format.

A test that checked the writer against the writer's own rules could not
fail, so this module restates §6.2/§6.3 from the text: required keys,
allowed metric keys, integer timestamps, compact JSON with sorted keys.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

EXPERIMENT_REQUIRED = ("project_name", "workspace", "start_time", "stop_time", "tags")
BOLD: dict[str, tuple[str, ...]] = {
    "system_details": (
        "command", "env", "hostname", "ip", "machine", "os", "os_release", "os_type", "pid",
        "processor", "python_exe", "python_version", "python_version_verbose", "user",
    ),
    "gpu_static_info": ("gpu_static_info",),
    "installed_packages": ("installed_packages",),
    "os_packages": ("os_packages",),
    "system_info": ("system_info",),
    "cloud_details": ("provider", "cloud_metadata"),
    "git_metadata": ("git_metadata",),
    "file_upload": ("file_path", "upload_type", "additional_params", "local_timestamp"),
    "metric_msg": ("local_timestamp", "metric"),
    "parameter_msg": ("local_timestamp", "param"),
    "standard_output": ("output", "stderr", "local_timestamp"),
    "log_other": ("key", "value"),
    "file_name": (),
}  # fmt: skip


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: object) -> bool:
    return (is_int(v) or isinstance(v, float)) and math.isfinite(v)  # type: ignore[arg-type]


def line_violations(raw: bytes, members: set[str] | None = None) -> list[str]:
    """What in one messages.json line breaks wire §6.3 (raw bytes, without the newline)."""
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return ["not UTF-8 JSON"]
    out: list[str] = []
    if text != json.dumps(obj, separators=(",", ":"), sort_keys=True):
        out.append("not compact JSON with sorted keys")
    if not isinstance(obj, dict) or set(obj) != {"payload", "type"}:
        return [*out, "line must be {payload, type}"]
    kind, payload = obj["type"], obj["payload"]
    if kind not in BOLD:
        return [*out, f"type {kind!r} is not one the wire notes list"]
    out += [f"{kind}: {k} missing" for k in BOLD[kind] if k not in payload]
    if "message_id" in payload and not is_int(payload["message_id"]):
        out.append("message_id not an int")
    if "local_timestamp" in payload and not is_int(payload["local_timestamp"]):
        out.append(f"{kind}: local_timestamp not an int")
    if kind == "metric_msg":
        metric = payload.get("metric")
        if not isinstance(metric, dict):
            return [*out, "metric not an object"]
        if not set(metric) <= {"metricName", "metricValue", "step", "epoch"}:
            out.append(f"metric keys {sorted(metric)} beyond the four allowed")
        for k in ("metricName", "metricValue", "step"):
            if k not in metric:
                out.append(f"metric.{k} missing")
        if not isinstance(metric.get("metricName"), str):
            out.append("metricName not a string")
        value = metric.get("metricValue")
        if not (is_number(value) or isinstance(value, str)):
            out.append("metricValue not a number or string")
        for k in ("step", "epoch"):
            if metric.get(k) is not None and not is_number(metric[k]):
                out.append(f"metric.{k} not a number or null")
        if "context" in payload and not isinstance(payload["context"], str):
            out.append("context present but not a string (omit when null)")
    if kind == "system_details":
        if not is_int(payload.get("pid")):
            out.append("pid not an int")
        if not isinstance(payload.get("command"), list):
            out.append("command not a list")
    if kind == "git_metadata":
        git = payload.get("git_metadata", {})
        out += [f"git_metadata.{k} missing" for k in ("user", "root", "branch", "parent", "origin")
                if k not in git]  # fmt: skip
    if kind == "gpu_static_info":
        for gpu in payload.get("gpu_static_info", []):
            if set(gpu) - {"gpu_index", "name", "uuid", "total_memory", "power_limit"}:
                out.append(f"gpu_static_info entry not snake_case: {sorted(gpu)}")
    if kind == "file_upload" and members is not None and payload.get("file_path") not in members:
        out.append(f"file_upload names {payload.get('file_path')!r}, absent from the zip root")
    return out


def experiment_violations(obj: object) -> list[str]:
    """What in experiment.json breaks wire §6.2."""
    if not isinstance(obj, dict):
        return ["not an object"]
    out = [f"{k} missing" for k in EXPERIMENT_REQUIRED if k not in obj]
    out += [f"{k} not int ms" for k in ("start_time", "stop_time") if not is_int(obj.get(k))]
    if obj.get("resume_strategy", "create") not in ("create", "get", "get_or_create"):
        out.append("bad resume_strategy")
    return out


def archive_violations(path: Path) -> list[str]:
    """Every wire §6 breach in a finished zip: members flat, experiment.json, each line."""
    out: list[str] = []
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        out += [f"member {n} not flat" for n in names if "/" in n]
        out += [f"{n} missing" for n in ("experiment.json", "messages.json") if n not in names]
        out += experiment_violations(json.loads(zf.read("experiment.json")))
        data = zf.read("messages.json")
    if data and not data.endswith(b"\n"):
        out.append("messages.json does not end with a newline")
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        out += [f"line {number}: {why}" for why in line_violations(raw, names)]
    return out


def archive_lines(path: Path) -> list[dict[str, object]]:
    """The parsed messages.json lines of a zip."""
    with zipfile.ZipFile(path) as zf:
        return [json.loads(raw) for raw in zf.read("messages.json").splitlines()]


def agent_lines(path: Path) -> list[dict[str, object]]:
    """The parsed comet_agent.jsonl lines of a zip (empty when absent)."""
    with zipfile.ZipFile(path) as zf:
        if "comet_agent.jsonl" not in zf.namelist():
            return []
        return [json.loads(raw) for raw in zf.read("comet_agent.jsonl").splitlines()]
