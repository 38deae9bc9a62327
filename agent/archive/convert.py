"""The mapping between the messages the agent sends and the lines of an offline archive.

``to_lines`` turns one message (endpoint, body, attachment) into messages.json
lines as wire §6.3 defines them, and says whether the lines carry every
field of the body; when they do not (system details, a log-other with its
timestamp, anything without a line type), the sink also keeps the body
verbatim in comet_agent.jsonl so ``comet-agent upload`` replays exactly what
the agent would have sent. ``from_line`` is the way back, for archives made
by the agent or by the Comet SDK.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.api import bodies
from agent.archive.format import GIT_KEYS, SYSTEM_DETAILS_KEYS, check_line

# Set System Details' camelCase fields and the system_details line's snake_case keys (wire §6.3).
_DETAILS = {
    "command": "command",
    "env": "env",
    "executable": "python_exe",
    "hostname": "hostname",
    "ip": "ip",
    "machine": "machine",
    "os": "os",
    "osRelease": "os_release",
    "osType": "os_type",
    "pid": "pid",
    "processor": "processor",
    "pythonVersion": "python_version",
    "pythonVersionVerbose": "python_version_verbose",
    "user": "user",
}
# Every key of a system_details line is required; what the body lacks is filled with these.
# `ip` is a string in the SDK's schema (offline-system-details-msg, default ""): its uploader
# rejects null, so an unknown address is written as "".
_FILL: Mapping[str, object] = {"command": [], "env": None, "ip": "", "pid": 0}
_GPU_KEYS = {"gpuIndex": "gpu_index", "totalMemory": "total_memory", "powerLimit": "power_limit"}
PATCH_FILE = "git-patch-{id}.zip"


@dataclass
class Conversion:
    """The archive lines of one message, and whether they hold all of it."""

    lines: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    complete: bool = True  # False: keep the body verbatim too, for our own uploader
    patch: bytes | None = None  # the git patch zip, stored as PATCH_FILE
    dropped: int = 0  # items that could not be written as a valid line


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    return _number(value) and math.isfinite(value)  # type: ignore[arg-type]


def _metric_payload(item: Mapping[str, object]) -> dict[str, object] | None:
    """A metric batch item as a metric_msg payload, or None when it cannot be one."""
    name, value, stamp = item.get("metricName"), item.get("metricValue"), item.get("timestamp")
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)  # wire §1.3: the SDK (and our client) send NaN/Infinity as strings
    if isinstance(stamp, float) and stamp.is_integer():
        stamp = int(stamp)
    step, epoch, context = item.get("step"), item.get("epoch"), item.get("context")
    # The same rules as format.check_line's for a metric_msg line, which to_lines then skips
    # for these (tests/test_archive.py holds the two together).
    if (
        not isinstance(name, str)
        or not name
        or not (_number(value) or isinstance(value, str))
        or not isinstance(stamp, int)
        or isinstance(stamp, bool)
        or (step is not None and not _finite(step))
        or (epoch is not None and not _finite(epoch))
        or (context is not None and not isinstance(context, str))
    ):
        return None
    metric = {"metricName": name, "metricValue": value, "step": step, "epoch": epoch}
    payload: dict[str, object] = {"local_timestamp": stamp, "metric": metric}
    if context is not None:
        payload["context"] = context  # wire §6.3: omitted when null
    return payload


def _items(body: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    found = body.get(key)
    return [i for i in found if isinstance(i, Mapping)] if isinstance(found, list) else []


def _system_details(body: Mapping[str, object], out: Conversion) -> None:
    out.complete = False  # our uploader replays the body as it was: grouping, no filled values
    if any(k in body for k in _DETAILS):
        details = {
            snake: body.get(camel, _FILL.get(snake, "")) for camel, snake in _DETAILS.items()
        }
        if details["ip"] is None:
            details["ip"] = ""
        out.lines.append(("system_details", details))
    for camel, kind in (("installedPackages", "installed_packages"), ("osPackages", "os_packages")):
        if camel in body:
            out.lines.append((kind, {kind: body[camel]}))
    if "gpuStaticInfoList" in body:
        gpus = [
            {_GPU_KEYS.get(k, k): v for k, v in gpu.items()}
            for gpu in _items(body, "gpuStaticInfoList")
        ]
        out.lines.append(("gpu_static_info", {"gpu_static_info": gpus}))
    for info in _items(body, "logAdditionalSystemInfoList"):
        out.lines.append(
            ("system_info", {"system_info": {"key": info.get("key"), "value": info.get("value")}})
        )


def to_lines(
    endpoint: str, body: Mapping[str, object], attachment: bytes | None, now_ms: int
) -> Conversion:
    """Convert one message into archive lines (without message ids); see the module doc."""
    out = Conversion()
    keys = set(body)
    if endpoint == "log-metric-batch":
        for item in _items(body, "values"):
            payload = _metric_payload(item)
            if payload is None:
                out.dropped += 1
            else:
                out.lines.append(("metric_msg", payload))
    elif endpoint == "log-output":
        context = body.get("runContext")
        for item in _items(body, "outputLines"):
            payload = {
                "output": item.get("output"),
                "stderr": item.get("stderr"),
                "local_timestamp": item.get("localTimestamp"),
            }
            if context is not None:
                payload["context"] = context
            out.lines.append(("standard_output", payload))
    elif endpoint == "log-parameter-batch":
        for item in _items(body, "values"):
            param = {
                k: item.get(v)
                for k, v in (
                    ("paramName", "parameterName"),
                    ("paramValue", "parameterValue"),
                    ("step", "step"),
                    ("source", "source"),
                )
            }
            payload = {"local_timestamp": item.get("timestamp"), "param": param}
            if item.get("context") is not None:
                payload["context"] = item["context"]
            out.lines.append(("parameter_msg", payload))
    elif endpoint == "set-system-details":
        _system_details(body, out)
    elif endpoint == "set-git-metadata":
        out.lines.append(("git_metadata", {"git_metadata": {k: body.get(k) for k in GIT_KEYS}}))
        out.complete = keys <= set(GIT_KEYS)
    elif endpoint == "upload-git-patch" and attachment is not None:
        out.patch = attachment
        out.lines.append(
            (
                "file_upload",
                {
                    "file_path": PATCH_FILE,  # the sink puts the message id in
                    "upload_type": "git-patch",
                    "additional_params": None,
                    "local_timestamp": now_ms,
                    "metadata": None,
                    "clean": True,
                },
            )
        )
        out.complete = not keys
    elif endpoint == "log-other":
        out.lines.append(("log_other", {"key": body.get("key"), "value": body.get("value")}))
        out.complete = keys <= {"key", "value"}
    elif endpoint == "set-file-path":
        out.lines.append(("file_name", {"file_name": body.get("filePath")}))
        out.complete = keys == {"filePath"}
    elif endpoint == "set-cloud-details":
        meta = body.get("metadata")
        out.lines.append(
            ("cloud_details", {"provider": body.get("provider"), "cloud_metadata": meta})
        )
        out.complete = keys == {"provider", "metadata"}
    else:
        out.complete = False  # no SDK line type: comet_agent.jsonl only
    valid = [
        (kind, p)
        for kind, p in out.lines
        if kind == "metric_msg" or not check_line({"type": kind, "payload": p})
    ]
    if len(valid) != len(out.lines):
        out.complete = False
        out.dropped += len(out.lines) - len(valid)
        out.lines = valid
    return out


def from_line(kind: str, payload: Mapping[str, object]) -> tuple[str, dict[str, object]] | None:
    """Return the (endpoint, body) that replays one valid archive line.

    None for ``standard_output`` and ``file_upload``, which need the uploader's
    state (the output offset, the attached file). A metric line becomes a
    one-item batch; the uploader groups consecutive ones.
    """
    if kind == "metric_msg":
        metric = payload["metric"]
        assert isinstance(metric, Mapping)  # noqa: S101 - check_line ran
        item = bodies.metric_item(
            str(metric["metricName"]),
            metric["metricValue"],
            int(payload["local_timestamp"]),  # type: ignore[call-overload]
            context=payload.get("context"),  # type: ignore[arg-type]
            step=metric.get("step"),
            epoch=metric.get("epoch"),
        )
        return "log-metric-batch", bodies.metric_batch([item])
    if kind == "system_details":
        fields = {
            ("executable" if k == "python_exe" else k): payload[k] for k in SYSTEM_DETAILS_KEYS
        }
        return "set-system-details", bodies.system_details(**fields)
    details = {
        "installed_packages": "installedPackages",
        "os_packages": "osPackages",
        "gpu_static_info": "gpuStaticInfoList",
    }
    if kind in details:
        return "set-system-details", {details[kind]: payload.get(kind)}
    if kind == "system_info":
        return "set-system-details", {"logAdditionalSystemInfoList": [payload.get(kind)]}
    if kind == "cloud_details":
        meta = payload.get("cloud_metadata")
        return "set-cloud-details", {"provider": payload.get("provider"), "metadata": meta}
    if kind == "log_other":
        return "log-other", bodies.log_other(str(payload["key"]), payload.get("value"))
    if kind == "file_name":
        return "set-file-path", {"filePath": payload.get("file_name")}
    if kind == "git_metadata":
        git = payload["git_metadata"]
        assert isinstance(git, Mapping)  # noqa: S101 - check_line ran
        return "set-git-metadata", {k: git.get(k) for k in GIT_KEYS}
    if kind == "parameter_msg":
        param = payload["param"]
        assert isinstance(param, Mapping)  # noqa: S101 - check_line ran
        item = {
            "parameterName": param.get("paramName"),
            "parameterValue": param.get("paramValue"),
            "step": param.get("step"),
            "source": param.get("source"),
            "context": payload.get("context"),
            "timestamp": payload.get("local_timestamp"),
        }
        return "log-parameter-batch", {"values": [item]}
    return None
