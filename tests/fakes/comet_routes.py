"""The stand-in's own copy of the wire notes' endpoints: paths, where the key goes, fields, types.

Written from wire §2-§3, deliberately *not* imported
from ``agent.api.endpoints``: a test that checked the agent against its own
table could not fail. Each route validates a decoded request and returns the
list of what is wrong with it (empty when it matches docs/comet-wire.md).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Check = Callable[[object], bool]
KEY_RE = re.compile(r"^[A-Za-z0-9]{32,50}$")  # wire §1.4: alphanumeric, 32-50 characters
# Plausible epoch milliseconds: after 2001-09-09 and before 2286. Seconds or monotonic
# clocks (wire §1.5's SDK defect) fall outside.
MS_MIN, MS_MAX = 1_000_000_000_000, 9_999_999_999_999


def is_str(v: object) -> bool:
    return isinstance(v, str)


def is_bool(v: object) -> bool:
    return isinstance(v, bool)


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def is_ms(v: object) -> bool:
    return is_int(v) and MS_MIN <= v <= MS_MAX  # type: ignore[operator]


def is_scalar(v: object) -> bool:
    return isinstance(v, str | int | float | bool)


def is_obj(v: object) -> bool:
    return isinstance(v, dict)


def list_of(check: Check) -> Check:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def nullable(check: Check) -> Check:
    return lambda v: v is None or check(v)


def is_percent(v: object) -> bool:
    return is_num(v) and 0 <= v <= 100  # type: ignore[operator]


def is_nonneg_int(v: object) -> bool:
    return is_int(v) and v >= 0  # type: ignore[operator]


def obj_with(
    required: Mapping[str, Check], optional: Mapping[str, Check] | None = None, exact: bool = True
) -> Check:
    """An object with these keys and types (and no others, when `exact`)."""
    optional = optional or {}

    def check(v: object) -> bool:
        if not isinstance(v, dict):
            return False
        if any(k not in v or not c(v[k]) for k, c in required.items()):
            return False
        if any(k in v and not c(v[k]) for k, c in optional.items()):
            return False
        return not exact or set(v) <= set(required) | set(optional)

    return check


METRIC_ITEM = obj_with(
    {
        "metricName": is_str,
        "metricValue": lambda v: is_num(v) or is_str(v),
        "step": nullable(is_num),
        "epoch": nullable(is_num),
        "context": nullable(is_str),
        "timestamp": is_ms,
    }
)
PARAM_ITEM = obj_with(
    {
        "parameterName": is_str,
        "parameterValue": nullable(is_scalar),
        "step": nullable(is_num),
        "source": nullable(is_str),
        "context": nullable(is_str),
        "timestamp": is_ms,
    }
)
OUTPUT_LINE = obj_with(
    {"stderr": is_bool, "output": is_str, "localTimestamp": is_ms, "offset": is_nonneg_int}
)
# wire §1.5: the SDK's own streamer and uploader send time.monotonic() ms as localTimestamp
# (a defect the server accepts). Only a test running the real SDK relaxes the check.
OUTPUT_LINE_SDK = obj_with(
    {"stderr": is_bool, "output": is_str, "localTimestamp": is_nonneg_int, "offset": is_nonneg_int}
)
GPU_ENTRY = obj_with(
    {
        "gpuId": is_nonneg_int,
        "freeMemory": is_nonneg_int,
        "usedMemory": is_nonneg_int,
        "totalMemory": is_nonneg_int,
        "gpuUtilization": lambda v: is_int(v) and is_percent(v),
    }
)
GPU_STATIC = obj_with(
    {
        "gpu_index": is_nonneg_int,
        "name": nullable(is_str),
        "uuid": nullable(is_str),
        "total_memory": nullable(is_nonneg_int),
        "power_limit": nullable(is_nonneg_int),
    }
)
SYSINFO_ITEM = obj_with({"key": lambda v: is_str(v) or is_num(v), "value": nullable(is_scalar)})
TIMING = {
    "context": nullable(is_str),
    "step": nullable(is_int),
    "epoch": nullable(is_int),
    "timestamp": is_ms,
}


@dataclass(frozen=True)
class Route:
    """One endpoint as the stand-in knows it."""

    name: str
    method: str
    path: str  # absolute path on the server; {K} is the experiment key
    key: str = "none"  # body | query | path | none
    required: Mapping[str, Check] = field(default_factory=dict)
    optional: Mapping[str, Check] = field(default_factory=dict)
    payload: str = "json"  # json | query | multipart
    gzip: bool = False
    api_key_in_body: bool = False
    file_name: str | None = None  # multipart: the part's filename
    rule: Callable[[Mapping[str, object]], list[str]] | None = None  # cross-field checks

    def pattern(self) -> re.Pattern[str]:
        """A regex matching this route's path (the key captured when it is in the path)."""
        return re.compile("^" + re.escape(self.path).replace(r"\{K\}", "(?P<K>[^/]+)") + "$")


R = "/api/rest/v2/"
CR = "/clientlib/rest/v2/"
CL = "/clientlib/"


def _project_update_rule(body: Mapping[str, object]) -> list[str]:
    has_id = body.get("projectId") is not None
    has_names = body.get("workspaceName") is not None and body.get("projectName") is not None
    if has_id == has_names:
        return ["update-project: give either projectId, or workspaceName and projectName"]
    return []


def _start_end_rule(body: Mapping[str, object]) -> list[str]:
    missing = [k for k in ("startTimeMillis", "endTimeMillis") if k not in body]
    return [f"set-start-end-time: {k} must be present (null when unset)" for k in missing]


def _metric_batch_rule(body: Mapping[str, object]) -> list[str]:
    values = body.get("values")
    if isinstance(values, list) and not values:
        return ["metric batch: values is empty"]
    return []


def _system_details_rule(body: Mapping[str, object]) -> list[str]:
    if len(set(body) - {"experimentKey"}) == 0:
        return ["system-details: no field besides experimentKey"]
    return []


def _q(*names: str) -> dict[str, Check]:
    return dict.fromkeys(names, is_str)


SYSTEM_DETAILS_FIELDS: dict[str, Check] = {
    "command": list_of(is_str),
    "env": nullable(is_obj),
    "executable": is_str,
    "hostname": is_str,
    "ip": nullable(is_str),
    "machine": is_str,
    "os": is_str,
    "osRelease": is_str,
    "osType": is_str,
    "pid": is_nonneg_int,
    "processor": is_str,
    "pythonVersion": is_str,
    "pythonVersionVerbose": is_str,
    "user": is_str,
    "installedPackages": list_of(is_str),
    "osPackages": list_of(is_str),
    "networkInterfaceIps": list_of(is_str),
    "logAdditionalSystemInfoList": list_of(SYSINFO_ITEM),
    "gpuStaticInfoList": list_of(GPU_STATIC),
}

ROUTES: tuple[Route, ...] = (
    Route(
        "create-workspace",
        "POST",
        R + "write/workspace/new",
        required=_q("name"),
        optional=_q("plan"),
    ),
    Route(
        "create-experiment",
        "POST",
        R + "write/experiment/create",
        required=_q("workspaceName", "projectName"),
        optional=_q("experimentName"),
    ),
    Route("stop-experiment", "GET", R + "write/experiment/stop", key="query", payload="query"),
    Route(
        "archive-experiment", "GET", R + "write/experiment/archive", key="query", payload="query"
    ),
    Route(
        "move-experiment",
        "POST",
        R + "write/experiment/move",
        required={
            **_q("targetWorkspaceName", "targetProjectName"),
            "experimentKeys": list_of(is_str),
            "symlink": is_bool,
        },
    ),
    Route(
        "add-symlink",
        "GET",
        R + "write/project/symlink",
        key="query",
        payload="query",
        required=_q("projectName"),
    ),
    Route("delete-experiment", "GET", R + "write/experiment/delete", key="query", payload="query"),
    Route(
        "restore-experiment", "GET", R + "write/experiment/restore", key="query", payload="query"
    ),
    Route(
        "create-project",
        "POST",
        R + "write/project/create",
        required={**_q("workspaceName", "projectName", "projectDescription"), "isPublic": is_bool},
    ),
    Route(
        "delete-project",
        "POST",
        R + "write/project/delete",
        required={**_q("workspaceName", "projectName"), "deleteAllExperiments": is_bool},
    ),
    Route(
        "update-project",
        "POST",
        R + "write/project/update",
        optional={
            **_q(
                "projectId",
                "workspaceName",
                "projectName",
                "newProjectName",
                "newProjectDescription",
            ),
            "isPublic": is_bool,
        },
        rule=_project_update_rule,
    ),
    Route(
        "update-project-notes", "POST", R + "write/project/notes", required=_q("projectId", "notes")
    ),
    Route(
        "add-project-share-link",
        "GET",
        R + "write/project/add-share-link",
        payload="query",
        required=_q("projectId"),
    ),
    Route(
        "delete-project-share-link",
        "GET",
        R + "write/project/delete-project-share-link",
        payload="query",
        required=_q("projectId", "shareCode"),
    ),
    Route(
        "create-registry-model",
        "POST",
        R + "write/registry-model",
        required=_q("experimentModelId", "registryModelName", "version"),
        optional={"isPublic": is_bool, **_q("description", "comment"), "stages": list_of(is_str)},
    ),
    Route(
        "promote-model",
        "POST",
        R + "write/registry-model/item",
        required=_q("experimentModelId", "registryModelName", "version"),
        optional={"comment": is_str, "stages": list_of(is_str)},
    ),
    Route(
        "update-registry-model-version",
        "POST",
        R + "write/registry-model/item/update",
        required=_q("registryModelItemId"),
        optional={"comment": is_str, "stages": list_of(is_str)},
    ),
    Route(
        "delete-registry-model-version",
        "GET",
        R + "write/registry-model/item/delete",
        payload="query",
        required=_q("modelItemId"),
    ),
    Route(
        "update-registry-model",
        "POST",
        R + "write/registry-model/update",
        required=_q("registryModelId"),
        optional={**_q("registryModelName", "description"), "isPublic": is_bool},
    ),
    Route(
        "update-registry-model-notes",
        "POST",
        R + "write/registry-model/notes",
        required=_q("workspaceName", "registryModelName", "notes"),
    ),
    Route(
        "delete-registry-model",
        "GET",
        R + "write/registry-model/delete",
        payload="query",
        required=_q("workspaceName", "modelName"),
    ),
    Route(
        "registry-model-count",
        "GET",
        R + "registry-model/count",
        payload="query",
        required=_q("workspaceName"),
    ),
    Route(
        "add-registry-model-version-stage",
        "GET",
        R + "write/registry-model/item/stage",
        payload="query",
        required=_q("modelItemId", "stage"),
    ),
    Route(
        "remove-registry-model-version-stage",
        "GET",
        R + "write/registry-model/item/stage/delete",
        payload="query",
        required=_q("modelItemId", "stage"),
    ),
    Route("keep-alive", "GET", R + "write/experiment/set-status", key="query", payload="query"),
    Route(
        "set-start-end-time",
        "POST",
        R + "write/experiment/set-start-end-time",
        key="body",
        optional={"startTimeMillis": nullable(is_ms), "endTimeMillis": nullable(is_ms)},
        rule=_start_end_rule,
    ),
    Route(
        "log-other",
        "POST",
        R + "write/experiment/log-other",
        key="body",
        required={"key": is_str, "value": nullable(is_scalar)},
        optional={"timestamp": is_ms},
    ),
    Route(
        "log-parameter",
        "POST",
        R + "write/experiment/parameter",
        key="body",
        required={"parameterName": is_str, "parameterValue": nullable(is_scalar)},
        optional={"step": is_int, "timestamp": is_ms},
    ),
    Route(
        "log-metric",
        "POST",
        R + "write/experiment/metric",
        key="body",
        required={"metricName": is_str, "metricValue": lambda v: is_num(v) or is_str(v)},
        optional=TIMING,
    ),
    Route(
        "set-html",
        "POST",
        R + "write/experiment/html",
        key="body",
        required=_q("html"),
        optional={"override": is_bool, "timestamp": is_ms},
    ),
    Route(
        "upload-asset",
        "POST",
        R + "write/experiment/upload-asset",
        key="query",
        payload="multipart",
        file_name="*",
        required=_q("fileName"),
        optional=_q("step", "overwrite", "context", "type", "extension", "metadata"),
    ),
    Route(
        "upload-git-patch",
        "POST",
        R + "write/experiment/git/patch",
        key="query",
        payload="multipart",
        file_name="filename",
    ),
    Route(
        "set-system-details",
        "POST",
        CR + "write/experiment/system-details",
        key="body",
        optional=SYSTEM_DETAILS_FIELDS,
        rule=_system_details_rule,
    ),
    Route(
        "set-git-metadata",
        "POST",
        R + "write/experiment/git/metadata",
        key="body",
        required={k: nullable(is_str) for k in ("user", "root", "branch", "parent", "origin")},
    ),
    Route(
        "log-output",
        "POST",
        CR + "write/experiment/output",
        key="body",
        gzip=True,
        required={"outputLines": list_of(OUTPUT_LINE)},
        optional={"runContext": nullable(is_str), "context": nullable(is_str)},
    ),
    Route("log-graph", "POST", R + "write/experiment/graph", key="body", required=_q("graph")),
    Route("set-code", "POST", R + "write/experiment/code", key="body", required=_q("code")),
    Route(
        "add-tags",
        "POST",
        R + "write/experiment/tags",
        key="body",
        required={"addedTags": list_of(is_str)},
    ),
    Route(
        "set-cloud-details",
        "POST",
        R + "write/experiment/cloud-details",
        key="body",
        required={"provider": is_str, "metadata": is_obj},
    ),
    Route(
        "set-file-path",
        "POST",
        R + "write/experiment/file-path",
        key="body",
        required=_q("filePath"),
    ),
    Route(
        "add-gpu-metrics",
        "POST",
        R + "write/experiment/gpu-metrics",
        key="body",
        required={"gpus": list_of(GPU_ENTRY)},
        optional=TIMING,
    ),
    Route(
        "add-ram-metrics",
        "POST",
        R + "write/experiment/ram-metrics",
        key="body",
        required={"totalRam": is_nonneg_int, "usedRam": is_nonneg_int},
        optional=TIMING,
    ),
    Route(
        "add-cpu-metrics",
        "POST",
        R + "write/experiment/cpu-metrics",
        key="body",
        required={"cpuPercentUtilization": list_of(is_percent)},
        optional=TIMING,
    ),
    Route(
        "add-load-metrics",
        "POST",
        R + "write/experiment/load-metrics",
        key="body",
        required={"loadAverage": lambda v: is_num(v) and v >= 0},  # type: ignore[operator]
        optional=TIMING,
    ),
    Route(
        "upsert-artifact",
        "POST",
        R + "write/artifacts/upsert",
        key="body",
        required=_q("artifactName", "artifactType"),
        optional={
            **_q("version", "versionMetadata"),
            "alias": list_of(is_str),
            "versionTags": list_of(is_str),
            "isPublic": is_bool,
        },
    ),
    Route(
        "set-artifact-state",
        "POST",
        R + "write/artifacts/state",
        key="body",
        required=_q("artifactVersionId", "state"),
        optional={"isPublic": is_bool},
    ),
    Route(
        "upload-remote-assets",
        "POST",
        CR + "write/artifact/assets/remote/batch",
        key="query",
        gzip=True,
        required={"remoteArtifactAssetRequests": list_of(is_obj)},
    ),
    Route(
        "delete-asset",
        "GET",
        R + "write/experiment/asset/delete",
        key="query",
        payload="query",
        required=_q("assetId"),
    ),
    # Not in the seed (wire §2, second table).
    Route("backend-version", "GET", "/clientlib/isAlive/ver", payload="query"),
    Route("experiment-metadata", "GET", R + "experiment/metadata", key="query", payload="query"),
    Route("account-details", "GET", R + "account-details", payload="query"),
    Route(
        "add-run",
        "POST",
        CL + "logger/add/run",
        key="body",
        api_key_in_body=True,
        required={
            "local_timestamp": is_ms,
            "offline": is_bool,
            "projectName": nullable(is_str),
            "teamName": nullable(is_str),
            "libVersion": is_str,
        },
        optional={"getOrCreateEnabled": is_bool},
    ),
    Route(
        "get-run",
        "POST",
        CL + "logger/get/run",
        key="body",
        api_key_in_body=True,
        # The SDK's ExistingExperiment names the key `previousExperiment` and sends no
        # `offline` [src connection/connection_api.py get_run]; the agent's uploader sends both.
        required={"local_timestamp": is_ms, "libVersion": is_str},
        optional={"offline": is_bool, "previousExperiment": is_str},
    ),
    Route(
        "status-report",
        "POST",
        CL + "status-report/update",
        key="body",
        api_key_in_body=True,
        required={
            "runId": is_str,
            "projectId": nullable(is_str),
            "is_alive": is_bool,
            "local_timestamp": is_ms,
            "offline": is_bool,
        },
    ),
    Route(
        "offline-metadata",
        "POST",
        CL + "status-report/offline-metadata",
        key="body",
        api_key_in_body=True,
        required={
            "runId": is_str,
            "startTimestamp": nullable(is_ms),
            "endTimestamp": nullable(is_ms),
        },
    ),
    Route(
        "log-metric-batch",
        "POST",
        CL + "batch/logger/experiment/metric",
        key="body",
        gzip=True,
        required={"values": list_of(METRIC_ITEM)},
        rule=_metric_batch_rule,
    ),
    Route(
        "log-parameter-batch",
        "POST",
        CL + "batch/logger/experiment/parameter",
        key="body",
        gzip=True,
        required={"values": list_of(PARAM_ITEM)},
    ),
    Route("health-ping", "GET", CL + "health/ping", payload="query"),
    Route("mark-not-throttled", "POST", R + "write/experiment/{K}/mark-not-throttled", key="path"),
    Route(
        "update-status",
        "POST",
        R + "write/experiment/update-status",
        key="body",
        required={"isAlive": is_bool, "error": nullable(is_str), "hasCrashed": is_bool},
    ),
)


def check_fields(route: Route, fields: Mapping[str, object]) -> list[str]:
    """Return what is wrong with a request's fields (body or query) for `route`."""
    problems: list[str] = []
    allowed = set(route.required) | set(route.optional) | {"experimentKey", "apiKey"}
    for name, check in route.required.items():
        if name not in fields:
            problems.append(f"{route.name}: missing required field {name}")
        elif not check(fields[name]):
            problems.append(
                f"{route.name}: field {name} has a wrong type or value: {str(fields[name])[:80]!r}"
            )
    for name, check in route.optional.items():
        if name in fields and not check(fields[name]):
            problems.append(
                f"{route.name}: field {name} has a wrong type or value: {str(fields[name])[:80]!r}"
            )
    unknown = sorted(set(fields) - allowed)
    if unknown:
        problems.append(f"{route.name}: unknown fields {', '.join(unknown)}")
    if route.rule is not None:
        problems.extend(route.rule(fields))
    return problems


def check_patch_zip(data: bytes) -> list[str]:
    """wire §3.5: the git patch is a zip holding exactly one member, git_diff.patch."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            if names != ["git_diff.patch"]:
                return [f"upload-git-patch: zip members are {names}, not ['git_diff.patch']"]
            if not zf.read("git_diff.patch"):
                return ["upload-git-patch: git_diff.patch is empty"]
    except zipfile.BadZipFile:
        return ["upload-git-patch: the file is not a zip archive"]
    return []
