"""The offline archive format of wire §6: names, line encoding, and the rules each line obeys.

An archive is a flat zip (or, while a run goes, a ``<key>.partial``
directory) holding ``experiment.json``, ``messages.json`` (JSON Lines the
Comet SDK's ``comet upload`` replays), any file a ``file_upload`` line names,
and ``comet_agent.jsonl``: the agent's own lines, which the SDK's uploader
ignores and ``comet-agent upload`` replays verbatim. The check functions
return what is wrong, in words, and are used by the writer (nothing invalid
is ever written: an invalid ``metric_msg`` stops the SDK's uploader from
sending any later metric), by the reader and by the tests.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

EXPERIMENT = "experiment.json"
MESSAGES = "messages.json"
AGENT_LINES = "comet_agent.jsonl"  # not read by the SDK's uploader
LOCK = ".lock"  # held (flock) by the process writing a partial directory
PARTIAL_SUFFIX = ".partial"
RESUME_STRATEGIES = ("create", "get", "get_or_create")
SYSTEM_DETAILS_KEYS = (
    "command",
    "env",
    "hostname",
    "ip",
    "machine",
    "os",
    "os_release",
    "os_type",
    "pid",
    "processor",
    "python_exe",
    "python_version",
    "python_version_verbose",
    "user",
)
GIT_KEYS = ("user", "root", "branch", "parent", "origin")
METRIC_KEYS = ("metricName", "metricValue", "step", "epoch")


@dataclass(frozen=True)
class Problem:
    """Something unreadable or invalid in an archive, named by member and line."""

    member: str
    line: int | None
    why: str

    def __str__(self) -> str:
        where = self.member if self.line is None else f"{self.member} line {self.line}"
        return f"{where}: {self.why}"


# One encoder for every line: json.dumps with options builds a new one per call.
_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False)


def dump_line(obj: Mapping[str, object]) -> bytes:
    """Encode one line as the SDK does (compact, sorted keys), UTF-8, ending in a newline."""
    return (_LINE_ENCODER.encode(obj) + "\n").encode()


def experiment_record(
    *,
    offline_id: str,
    workspace: str | None,
    project: str | None,
    start_ms: int,
    stop_ms: int,
    tags: Sequence[str] = (),
    resume_strategy: str = "create",
    user_provided_key: bool = False,
    error: str | None = None,
) -> dict[str, object]:
    """Return the content of experiment.json (wire §6.2, the optional fields as in its example)."""
    return {
        "offline_id": offline_id,
        "project_name": project,
        "workspace": workspace,
        "start_time": start_ms,
        "stop_time": stop_ms,
        "tags": list(tags),
        "resume_strategy": resume_strategy,
        "customer_error_reported": error is not None,
        "customer_error_message": error,
        "user_provided_experiment_key": user_provided_key,
        "comet_start_sourced": False,  # wire §6.2: true picks the comet_ml.start() handshake
    }


def archive_name(offline_id: str, resume_strategy: str, suffix: str | None = None) -> str:
    """Return the zip's file name (wire §6.1): ``<id>.zip``, or ``<id>-<6 letters>.zip``."""
    if resume_strategy == "create" and suffix is None:
        return f"{offline_id}.zip"
    return f"{offline_id}-{suffix}.zip"


def upload_hint(path: Path, *others: Path) -> str:
    """Return the one line the daemon prints on exit: where the archive is, how to upload it
    (with `others`: the archives an SDK in the command wrote for the same experiment)."""
    quoted = shlex.quote(str(path))
    every = " ".join(shlex.quote(str(p)) for p in (*others, path))
    return (
        f"comet-agent: offline archive written to {quoted}; "
        f"upload it with: comet-agent upload {every}"
    )


# -- checks -------------------------------------------------------------------------------------


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return _is_int(v)


def _is_str_list(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_experiment(obj: object) -> list[str]:
    """Return what makes `obj` an invalid experiment.json (wire §6.2); empty when valid."""
    if not isinstance(obj, dict):
        return ["is not a JSON object"]
    out: list[str] = []
    for key in ("project_name", "workspace"):
        if key not in obj:
            out.append(f"{key} is missing")
        elif obj[key] is not None and not isinstance(obj[key], str):
            out.append(f"{key} must be a string or null")
    for key in ("start_time", "stop_time"):
        if not _is_int(obj.get(key)):
            out.append(f"{key} must be integer milliseconds")
    if not _is_str_list(obj.get("tags")):
        out.append("tags must be a list of strings")
    if "offline_id" in obj and not isinstance(obj["offline_id"], str):
        out.append("offline_id must be a string")
    strategy = obj.get("resume_strategy", "create")
    if strategy not in RESUME_STRATEGIES:
        out.append(f"resume_strategy must be one of {', '.join(RESUME_STRATEGIES)}")
    for key in ("customer_error_reported", "user_provided_experiment_key", "comet_start_sourced"):
        if key in obj and not isinstance(obj[key], bool):
            out.append(f"{key} must be true or false")
    return out


def _check_metric(p: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    if not _is_int(p.get("local_timestamp")):
        out.append("local_timestamp must be integer milliseconds")
    if "context" in p and not isinstance(p["context"], str):
        out.append("context must be a string, and left out when null")
    metric = p.get("metric")
    if not isinstance(metric, dict):
        return [*out, "metric must be an object"]
    extra = sorted(set(metric) - set(METRIC_KEYS))
    if extra:
        out.append(f"metric has keys the archive format does not allow: {', '.join(extra)}")
    if not isinstance(metric.get("metricName"), str) or not metric.get("metricName"):
        out.append("metric.metricName must be a non-empty string")
    value = metric.get("metricValue")
    if not (_is_num(value) or isinstance(value, str)):
        out.append("metric.metricValue must be a finite number or a string")
    if "step" not in metric:
        out.append("metric.step is missing")
    for key in ("step", "epoch"):
        if metric.get(key) is not None and not _is_num(metric.get(key)):
            out.append(f"metric.{key} must be a number or null")
    return out


def _check_system_details(p: Mapping[str, object]) -> list[str]:
    out = [f"{k} is missing" for k in SYSTEM_DETAILS_KEYS if k not in p]
    command = p.get("command")
    if "command" in p and not (_is_str_list(command) or isinstance(command, str)):
        out.append("command must be a list of strings")
    if p.get("env") is not None and not isinstance(p.get("env"), dict):
        out.append("env must be an object or null")
    if "pid" in p and not _is_int(p["pid"]):
        out.append("pid must be an integer")
    if p.get("ip") is not None and not isinstance(p.get("ip"), str):
        out.append("ip must be a string or null")
    text_keys = set(SYSTEM_DETAILS_KEYS) - {"command", "env", "pid", "ip"}
    out.extend(
        f"{k} must be a string" for k in sorted(text_keys) if k in p and not isinstance(p[k], str)
    )
    return out


def _check_gpu_static(p: Mapping[str, object]) -> list[str]:
    gpus = p.get("gpu_static_info")
    if not isinstance(gpus, list):
        return ["gpu_static_info must be a list"]
    out: list[str] = []
    for i, gpu in enumerate(gpus):
        if not isinstance(gpu, dict) or not _is_int(gpu.get("gpu_index")):
            out.append(f"gpu_static_info[{i}] must be an object with an integer gpu_index")
            continue
        for key in ("total_memory", "power_limit"):
            if gpu.get(key) is not None and not _is_int(gpu.get(key)):
                out.append(f"gpu_static_info[{i}].{key} must be an integer or null")
    return out


def _check_file_upload(p: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    path = p.get("file_path")
    if not isinstance(path, str) or not path or "/" in path or path in (EXPERIMENT, MESSAGES):
        out.append("file_path must be the base name of a file in the archive")
    if not isinstance(p.get("upload_type"), str):
        out.append("upload_type must be a string")
    if "additional_params" not in p or (
        p["additional_params"] is not None and not isinstance(p["additional_params"], dict)
    ):
        out.append("additional_params must be an object or null")
    if not _is_int(p.get("local_timestamp")):
        out.append("local_timestamp must be integer milliseconds")
    if p.get("metadata") is not None and not isinstance(p.get("metadata"), dict):
        out.append("metadata must be an object or null")
    if "clean" in p and not isinstance(p["clean"], bool):
        out.append("clean must be true or false")
    return out


def _check_rest(kind: str, p: Mapping[str, object]) -> list[str] | None:
    """Checks of the smaller line types; None for a type the format does not list."""
    if kind in ("installed_packages", "os_packages"):
        return [] if _is_str_list(p.get(kind)) else [f"{kind} must be a list of strings"]
    if kind == "system_info":
        info = p.get("system_info")
        ok = (
            isinstance(info, dict)
            and (isinstance(info.get("key"), str) or _is_num(info.get("key")))
            and (isinstance(info.get("value"), str) or _is_num(info.get("value")))
        )
        return [] if ok else ["system_info must be {key, value}, each a string or a number"]
    if kind == "cloud_details":
        ok = isinstance(p.get("provider"), str) and isinstance(p.get("cloud_metadata"), dict)
        return [] if ok else ["provider must be a string and cloud_metadata an object"]
    if kind == "git_metadata":
        git = p.get("git_metadata")
        if not isinstance(git, dict):
            return ["git_metadata must be an object"]
        return [
            f"git_metadata.{k} must be a string or null"
            for k in GIT_KEYS
            if k not in git or (git[k] is not None and not isinstance(git[k], str))
        ]
    if kind == "parameter_msg":
        param = p.get("param")
        out = [] if _is_int(p.get("local_timestamp")) else ["local_timestamp must be integer ms"]
        if not isinstance(param, dict) or not all(
            k in param for k in ("paramName", "paramValue", "step")
        ):
            out.append("param must hold paramName, paramValue and step")
        return out
    if kind == "standard_output":
        out = [] if isinstance(p.get("output"), str) else ["output must be a string"]
        if not isinstance(p.get("stderr"), bool):
            out.append("stderr must be true or false")
        if not _is_int(p.get("local_timestamp")):
            out.append("local_timestamp must be integer milliseconds")
        return out
    if kind == "log_other":
        out = [] if isinstance(p.get("key"), str) else ["key must be a string"]
        if "value" not in p:
            out.append("value is missing")
        return out
    if kind == "file_name":
        return [] if isinstance(p.get("file_name"), str) else ["file_name must be a string"]
    return None


def check_line(obj: object) -> list[str]:
    """Return what makes `obj` an invalid messages.json line (wire §6.3); empty when valid."""
    if not isinstance(obj, dict) or not isinstance(obj.get("payload"), dict):
        return ["is not an object with a payload object"]
    kind = obj.get("type")
    payload: dict[str, object] = obj["payload"]
    if "message_id" in payload and not _is_int(payload["message_id"]):
        return ["message_id must be an integer"]
    if kind == "metric_msg":
        return _check_metric(payload)
    if kind == "system_details":
        return _check_system_details(payload)
    if kind == "gpu_static_info":
        return _check_gpu_static(payload)
    if kind == "file_upload":
        return _check_file_upload(payload)
    if not isinstance(kind, str):
        return ["type must be a string"]
    rest = _check_rest(kind, payload)
    return [f"unknown line type {kind!r}"] if rest is None else rest
