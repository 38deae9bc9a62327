"""Every Comet write endpoint of the seed, and the few extra ones the agent needs, as data.

Each row is copied from wire §2 (method, base, path,
where the experiment key goes, fields and their JSON types). Rows whose path
docs/comet-wire.md marks unknown keep ``path=None``: they are listed, and
``comet-agent api NAME --path P`` can still reach them, but nothing guesses.

Field types are a small vocabulary checked by ``check_type``: ``str``,
``int``, ``number`` (int or float), ``bool``, ``scalar`` (str, number, bool),
``object``, ``list``, ``list[str]``, ``list[number]``, ``list[object]``,
``any``; a trailing ``?`` also admits ``null``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Base(enum.Enum):
    """Which of the URL bases of wire §1.1 an endpoint hangs off."""

    REST = "/api/rest/v2/"  # root + /api/rest/v2/
    CLIENTLIB_REST = "/clientlib/rest/v2/"  # root + /clientlib/rest/v2/ (the "alternate" base)
    CLIENTLIB = "clientlib"  # COMET_URL_OVERRIDE itself, path kept
    ROOT = "/"  # root only (version probe)


class KeyIn(enum.Enum):
    """Where the experiment key travels (wire §1.4)."""

    BODY = "body"  # JSON field experimentKey
    QUERY = "query"  # ?experimentKey=K
    PATH = "path"  # {experimentKey} in the path
    NONE = "none"


class Payload(enum.Enum):
    """How the fields travel."""

    JSON = "json"  # POST body
    QUERY = "query"  # GET query string
    MULTIPART = "multipart"  # POST multipart, fields in the query, one file part named "file"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint: what the client needs to build a request, and what the CLI lists."""

    name: str
    title: str
    method: str
    base: Base
    path: str | None
    key_in: KeyIn
    payload: Payload
    required: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)
    gzip: bool = False  # wire §1.3: only the batched streaming calls are compressed
    api_key_in_body: bool = False  # clientlib protocol calls carry apiKey in the JSON body
    seed: bool = True  # listed in the seed's Write Endpoints page
    file_name: str = "file"  # multipart: the filename of the "file" part
    example: Mapping[str, object] = field(default_factory=dict)
    note: str = ""

    @property
    def known(self) -> bool:
        """Whether docs/comet-wire.md gives a path for this endpoint."""
        return self.path is not None

    @property
    def display_path(self) -> str:
        """The path as a user reads it: base and path, or why there is none."""
        if self.path is None:
            return "(path unknown, wire §7)"
        base = "{clientlib}/" if self.base is Base.CLIENTLIB else self.base.value
        return base + self.path

    def fields(self) -> dict[str, str]:
        """Return every field this endpoint takes, required first."""
        return {**self.required, **self.optional}


_TYPES = {
    "str",
    "int",
    "number",
    "bool",
    "scalar",
    "object",
    "list",
    "list[str]",
    "list[number]",
    "list[object]",
    "any",
}


def check_type(value: object, type_name: str) -> bool:
    """Return whether a decoded JSON value fits one of the field types above."""
    if type_name.endswith("?"):
        return value is None or check_type(value, type_name[:-1])
    if type_name == "any":
        return True
    if type_name == "str":
        return isinstance(value, str)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "scalar":
        return isinstance(value, str | int | float | bool)
    if type_name == "object":
        return isinstance(value, dict)
    if type_name == "list":
        return isinstance(value, list)
    if type_name.startswith("list[") and isinstance(value, list):
        inner = type_name[5:-1]
        return all(check_type(item, inner) for item in value)
    return False


def _f(*specs: str) -> dict[str, str]:
    """Turn ``"name:type"`` strings into a field mapping (type ``str`` when left out)."""
    out: dict[str, str] = {}
    for spec in specs:
        name, _, type_name = spec.partition(":")
        type_name = type_name or "str"
        if type_name.rstrip("?") not in _TYPES:
            raise ValueError(f"unknown field type {type_name!r} in {spec!r}")
        out[name] = type_name
    return out


_R, _CR, _CL = Base.REST, Base.CLIENTLIB_REST, Base.CLIENTLIB
_B, _Q, _P, _N = KeyIn.BODY, KeyIn.QUERY, KeyIn.PATH, KeyIn.NONE
_JSON, _GET, _MULTI = Payload.JSON, Payload.QUERY, Payload.MULTIPART
_TIMING = ("context:str?", "step:int?", "epoch:int?", "timestamp:int?")

# fmt: off
_ROWS: tuple[Endpoint, ...] = (
    # --- seed rows 1-24: workspace, experiment, project, registry -----------------------------
    Endpoint("create-workspace", "Create Workspace", "POST", _R, "write/workspace/new", _N, _JSON,
             _f("name"), _f("plan"), example={"name": "someName", "plan": "PLAN"},
             note="not captured; path from the public docs"),
    Endpoint("create-experiment", "Create Experiment", "POST", _R, "write/experiment/create", _N,
             _JSON, _f("workspaceName", "projectName"), _f("experimentName"),
             example={"workspaceName": "someTeamName", "projectName": "someProjectName",
                      "experimentName": "someExperimentName"}),
    Endpoint("stop-experiment", "Stop Experiment", "GET", _R, "write/experiment/stop", _Q, _GET,
             note="asks a running SDK to stop; not an end marker"),
    Endpoint("archive-experiment", "Archive Experiment", "GET", _R, "write/experiment/archive",
             _Q, _GET),
    Endpoint("move-experiment", "Move an Experiment to another Project", "POST", _R,
             "write/experiment/move", _N, _JSON,
             _f("targetWorkspaceName", "targetProjectName", "experimentKeys:list[str]",
                "symlink:bool"),
             example={"targetWorkspaceName": "TARGET_WORKSPACE",
                      "targetProjectName": "TARGET_PROJECT_NAME",
                      "experimentKeys": ["THE_KEY", "ANOTHER_KEY"], "symlink": True}),
    Endpoint("add-symlink", "Add Symlink to Experiment", "GET", _R, "write/project/symlink", _Q,
             _GET, _f("projectName"), example={"projectName": "someProjectName"}),
    Endpoint("delete-experiment", "Delete Experiment", "GET", _R, "write/experiment/delete", _Q,
             _GET),
    Endpoint("restore-experiment", "Restore Experiment", "GET", _R, "write/experiment/restore",
             _Q, _GET),
    Endpoint("create-project", "Create Project", "POST", _R, "write/project/create", _N, _JSON,
             _f("workspaceName", "projectName", "projectDescription", "isPublic:bool"),
             example={"workspaceName": "someTeamName", "projectName": "someProjectName",
                      "projectDescription": "someProjectDescription", "isPublic": False}),
    Endpoint("delete-project", "Delete Project", "POST", _R, "write/project/delete", _N, _JSON,
             _f("workspaceName", "projectName", "deleteAllExperiments:bool"),
             example={"workspaceName": "someTeamName", "projectName": "someProjectName",
                      "deleteAllExperiments": False}),
    Endpoint("update-project", "Update Project", "POST", _R, "write/project/update", _N, _JSON,
             {}, _f("projectId", "workspaceName", "projectName", "newProjectName",
                    "newProjectDescription", "isPublic:bool"),
             example={"projectId": "someProjectId", "newProjectName": "someNewName",
                      "newProjectDescription": "someProjectDescription", "isPublic": False},
             note="either projectId, or workspaceName and projectName"),
    Endpoint("update-project-notes", "Update notes for Project", "POST", _R, "write/project/notes",
             _N, _JSON, _f("projectId", "notes"),
             example={"projectId": "someProjectId", "notes": "someNotesString"}),
    Endpoint("add-project-share-link", "Add a Project Share Link", "GET", _R,
             "write/project/add-share-link", _N, _GET, _f("projectId"),
             example={"projectId": "someProjectId"}),
    Endpoint("delete-project-share-link", "Delete a Project Share Link", "GET", _R,
             "write/project/delete-project-share-link", _N, _GET, _f("projectId", "shareCode"),
             example={"projectId": "someProjectId", "shareCode": "the-code"}),
    Endpoint("create-registry-model", "Create Registry Model", "POST", _R, "write/registry-model",
             _N, _JSON, _f("experimentModelId", "registryModelName", "version"),
             _f("isPublic:bool", "description", "comment", "stages:list[str]"),
             example={"experimentModelId": "someExperimentModelId",
                      "registryModelName": "someRegistryModelName", "version": "1.0.0",
                      "isPublic": False, "description": "Some Description",
                      "comment": "Some Comment", "stages": ["production", "staging"]}),
    Endpoint("promote-model", "Promote Experiment Model to Registry Model", "POST", _R,
             "write/registry-model/item", _N, _JSON,
             _f("experimentModelId", "registryModelName", "version"),
             _f("comment", "stages:list[str]"),
             example={"experimentModelId": "someExperimentModelId",
                      "registryModelName": "someRegistryModelName", "version": "1.0.1",
                      "comment": "Some Comment", "stages": ["production", "staging"]}),
    Endpoint("update-registry-model-version", "Update Registry Model Version", "POST", _R,
             "write/registry-model/item/update", _N, _JSON, _f("registryModelItemId"),
             _f("comment", "stages:list[str]"),
             example={"registryModelItemId": "someRegistryModelItemId",
                      "comment": "Some Comment", "stages": ["production", "staging"]}),
    Endpoint("delete-registry-model-version", "Delete Registry Model Version", "GET", _R,
             "write/registry-model/item/delete", _N, _GET, _f("modelItemId"),
             example={"modelItemId": "someRegistryModelItemId"}),
    Endpoint("update-registry-model", "Update Registry Model", "POST", _R,
             "write/registry-model/update", _N, _JSON, _f("registryModelId"),
             _f("registryModelName", "description", "isPublic:bool"),
             example={"registryModelId": "someRegistryModelId",
                      "registryModelName": "newRegistryModelName",
                      "description": "New Description", "isPublic": False}),
    Endpoint("update-registry-model-notes", "Update Registry Model Notes", "POST", _R,
             "write/registry-model/notes", _N, _JSON,
             _f("workspaceName", "registryModelName", "notes"),
             example={"workspaceName": "someWorkspaceName",
                      "registryModelName": "someRegistryModelName",
                      "notes": "A potentially very long notes string"}),
    Endpoint("delete-registry-model", "Delete Registry Model", "GET", _R,
             "write/registry-model/delete", _N, _GET, _f("workspaceName", "modelName"),
             example={"workspaceName": "someWorkspaceName", "modelName": "someModelName"}),
    Endpoint("registry-model-count", "Get Model Registry Count", "GET", _R, "registry-model/count",
             _N, _GET, _f("workspaceName"), example={"workspaceName": "someWorkspaceName"},
             note="a read endpoint listed among the writes"),
    Endpoint("add-registry-model-version-stage", "Add Registry Model Version Stage", "GET", _R,
             "write/registry-model/item/stage", _N, _GET, _f("modelItemId", "stage"),
             example={"modelItemId": "someRegistryModelItemId", "stage": "production"}),
    Endpoint("remove-registry-model-version-stage", "Remove Registry Model Version Stage", "GET",
             _R, "write/registry-model/item/stage/delete", _N, _GET, _f("modelItemId", "stage"),
             example={"modelItemId": "someRegistryModelItemId", "stage": "production"}),
    # --- seed rows 25-45: the live experiment ------------------------------------------------
    Endpoint("keep-alive", "Send Experiment Keep-Alive Signal", "GET", _R,
             "write/experiment/set-status", _Q, _GET,
             note="answers isAliveBeatDurationMillis, cpu/gpuMonitorIntervalMillis"),
    Endpoint("set-start-end-time", "Set Experiment Start and End Time", "POST", _R,
             "write/experiment/set-start-end-time", _B, _JSON,
             _f("startTimeMillis:int?", "endTimeMillis:int?"),
             example={"startTimeMillis": 1700000000500, "endTimeMillis": None},
             note="both keys always sent, the unset one null"),
    Endpoint("log-other", "Log Other", "POST", _R, "write/experiment/log-other", _B, _JSON,
             _f("key", "value:scalar?"), _f("timestamp:int?"),
             example={"key": "someKey", "value": "someValue", "timestamp": 1700000000500}),
    Endpoint("log-parameter", "Log Parameter", "POST", _R, "write/experiment/parameter", _B, _JSON,
             _f("parameterName", "parameterValue:scalar?"), _f("step:int?", "timestamp:int?"),
             example={"parameterName": "someParamName", "parameterValue": "someParamValue",
                      "step": 1, "timestamp": 1700000000500}),
    Endpoint("log-metric", "Log Metric", "POST", _R, "write/experiment/metric", _B, _JSON,
             _f("metricName", "metricValue:scalar"), _f(*_TIMING),
             example={"metricName": "someMetricName", "metricValue": 0.5, "step": 7, "epoch": 2,
                      "context": "train", "timestamp": 1700000000500}),
    Endpoint("set-html", "Set HTML", "POST", _R, "write/experiment/html", _B, _JSON, _f("html"),
             _f("override:bool", "timestamp:int?"),
             example={"html": "<b>someHtml</b>", "override": False,
                      "timestamp": 1700000000500}),
    Endpoint("upload-asset", "Upload Asset", "POST", _R, "write/experiment/upload-asset", _Q,
             _MULTI, _f("fileName"),
             _f("step:int", "overwrite:bool", "context", "type", "extension", "metadata:object"),
             example={"fileName": "notes.txt", "type": "asset", "overwrite": False},
             note="multipart part 'file'; metadata travels as its own part"),
    Endpoint("upload-text-sample", "Upload Text Sample", "POST", _R, None, _B, _JSON,
             _f("content"), _f("context", "metadata", "step:int"),
             example={"content": "The text sample", "context": "someContext", "step": 1},
             note="no such REST call in the SDK (it uploads an asset of type text-sample)"),
    Endpoint("upload-git-patch", "Upload Git Patch", "POST", _R, "write/experiment/git/patch", _Q,
             _MULTI, file_name="filename",
             note="the file is a zip holding one member, git_diff.patch"),
    Endpoint("set-system-details", "Set System Details", "POST", _CR,
             "write/experiment/system-details", _B, _JSON, {},
             _f("command:list[str]", "env:object?", "executable", "hostname", "ip:str?",
                "machine", "os", "osRelease", "osType", "pid:int", "processor",
                "pythonVersion", "pythonVersionVerbose", "user", "installedPackages:list[str]",
                "osPackages:list[str]", "networkInterfaceIps:list[str]",
                "logAdditionalSystemInfoList:list[object]", "gpuStaticInfoList:list[object]"),
             example={"command": ["myScript.py", "-arg", "theArgument"],
                      "executable": "/usr/local/bin/python", "hostname": "someHostname",
                      "ip": "192.0.2.10", "os": "Linux-6.1.0-x86_64-with-glibc2.36",
                      "osType": "Linux", "pid": 4242, "pythonVersion": "3.11.7",
                      "pythonVersionVerbose": "3.11.7 (main) [GCC 12.2.0]", "user": "someUser",
                      "installedPackages": ["psutil==7.2.2"], "osPackages": ["libc6=2.36-9"],
                      "networkInterfaceIps": ["127.0.0.1"],
                      "logAdditionalSystemInfoList": [{"key": "someKey", "value": "someValue"}],
                      "gpuStaticInfoList": [{"gpu_index": 0, "name": "NVIDIA H200",
                                             "uuid": "GPU-0", "total_memory": 150754820096,
                                             "power_limit": 700000}]},
             note="clientlib REST base, as the SDK uses it"),
    Endpoint("set-git-metadata", "Set Git Metadata", "POST", _R, "write/experiment/git/metadata",
             _B, _JSON, _f("user:str?", "root:str?", "branch:str?", "parent:str?", "origin:str?"),
             example={"user": "gitUser", "root": "a" * 40, "branch": "refs/heads/main",
                      "parent": "b" * 40, "origin": "https://example.com/acme/agent.git"}),
    Endpoint("log-output", "Log Output", "POST", _CR, "write/experiment/output", _B, _JSON,
             _f("outputLines:list[object]"), _f("runContext:str?"), gzip=True,
             example={"outputLines": [{"stderr": False, "output": "someOutput",
                                       "localTimestamp": 1700000000500, "offset": 0}],
                      "runContext": None},
             note="clientlib REST base; the SDK calls the context field runContext"),
    Endpoint("log-graph", "Log Graph", "POST", _R, "write/experiment/graph", _B, _JSON,
             _f("graph"), example={"graph": "someGraph"}),
    Endpoint("set-code", "Set Code", "POST", _R, "write/experiment/code", _B, _JSON, _f("code"),
             example={"code": "someCode"}),
    Endpoint("add-tags", "Add Tags", "POST", _R, "write/experiment/tags", _B, _JSON,
             _f("addedTags:list[str]"), example={"addedTags": ["someTag", "anotherTag"]}),
    Endpoint("set-cloud-details", "Set a Cloud Detail Item", "POST", _R,
             "write/experiment/cloud-details", _B, _JSON, _f("provider", "metadata:object"),
             example={"provider": "aws", "metadata": {"key": "value"}}),
    Endpoint("set-file-path", "Set an Experiment's File-path", "POST", _R,
             "write/experiment/file-path", _B, _JSON, _f("filePath"),
             example={"filePath": "/home/me/train.py"}),
    Endpoint("add-gpu-metrics", "Add GPU Metrics", "POST", _R, "write/experiment/gpu-metrics", _B,
             _JSON, _f("gpus:list[object]"), _f(*_TIMING),
             example={"gpus": [{"gpuId": 0, "freeMemory": 100000000000,
                                "usedMemory": 50754820096, "gpuUtilization": 37,
                                "totalMemory": 150754820096}]}),
    Endpoint("add-ram-metrics", "Add RAM Metrics", "POST", _R, "write/experiment/ram-metrics", _B,
             _JSON, _f("totalRam:int", "usedRam:int"), _f(*_TIMING),
             example={"totalRam": 134217728000, "usedRam": 4294967296, "context": "train",
                      "step": 7, "epoch": 2, "timestamp": 1700000000500}),
    Endpoint("add-cpu-metrics", "Add CPU Metrics", "POST", _R, "write/experiment/cpu-metrics", _B,
             _JSON, _f("cpuPercentUtilization:list[number]"), _f(*_TIMING),
             example={"cpuPercentUtilization": [12, 99, 3], "context": "train", "step": 7,
                      "epoch": 2, "timestamp": 1700000000500}),
    Endpoint("add-load-metrics", "Add Processor Load Metrics", "POST", _R,
             "write/experiment/load-metrics", _B, _JSON, _f("loadAverage:number"), _f(*_TIMING),
             example={"loadAverage": 1.25, "context": "train", "step": 7, "epoch": 2,
                      "timestamp": 1700000000500}),
    # --- seed rows 46-56: artifacts, assets, panels, RPC, webhooks ---------------------------
    Endpoint("upsert-artifact", "Update or Insert Artifact", "POST", _R, "write/artifacts/upsert",
             _B, _JSON, _f("artifactName", "artifactType"),
             _f("version", "versionMetadata", "alias:list[str]", "versionTags:list[str]",
                "isPublic:bool"),
             example={"artifactName": "someArtifactName", "artifactType": "dataframe",
                      "version": "1.0.0", "isPublic": False}),
    Endpoint("set-artifact-state", "Set Artifact State", "POST", _R, "write/artifacts/state", _B,
             _JSON, _f("artifactVersionId", "state"), _f("isPublic:bool"),
             example={"artifactVersionId": "8bb9aa15-12d8-4068-ae85-5474232ccb00",
                      "state": "CLOSED"}),
    Endpoint("save-store", "Save Store", "POST", _R, None, _N, _JSON,
             _f("instanceId", "projectId", "store"),
             example={"instanceId": "INSTANCE_ID", "projectId": "PROJECT_ID",
                      "store": "{\"key1\": \"value1\"}"},
             note="optimizer/panel internals; no SDK call"),
    Endpoint("upload-remote-assets", "Upload Remote Assets", "POST", _CR,
             "write/artifact/assets/remote/batch", _Q, _JSON,
             _f("remoteArtifactAssetRequests:list[object]"), gzip=True,
             example={"remoteArtifactAssetRequests": [
                 {"link": "s3://bucket/file.py", "type": "asset", "metadata": "{}",
                  "fileName": "file.py",
                  "artifactVersionId": "692dd29d-086e-4dd8-852a-ed002ace1654"}]},
             note="the SDK's artifact batch variant; the seed's remoteAssets shape is unknown"),
    Endpoint("delete-asset", "Delete an Asset", "GET", _R, "write/experiment/asset/delete", _Q,
             _GET, _f("assetId"), example={"assetId": "someAssetId"}),
    Endpoint("add-asset-tag", "Add an Asset Tag", "POST", _R, None, _B, _JSON,
             _f("assetId", "tags:list[str]"),
             example={"assetId": "cctWICTpuNVmtICxj6zjlveoz", "tags": ["otherTag"]}),
    Endpoint("delete-asset-tag", "Delete an Asset Tag", "GET", _R, None, _Q, _GET),
    Endpoint("upload-panel", "Upload a Panel", "POST", _R, None, _N, _JSON,
             note="the SDK's write/chart-templates/upsert is probably it, unverified"),
    Endpoint("remote-procedure-call", "Remote Procedure Call", "POST", _R, None, _B, _JSON,
             note="the SDK uses {clientlib}/rpc/* instead"),
    Endpoint("update-webhook-config", "Update Webhook Configuration", "POST", _R, None, _N, _JSON,
             _f("webhookConfigs:list[object]"),
             example={"webhookConfigs": [{"modelName": "some-model",
                                          "workspaceName": "some-workspace",
                                          "webhookUrls": [{"url": "https://hooks.example.com/a",
                                                           "header": {"Other": "info"}}]}]}),
    Endpoint("override-webhook-config", "Override Webhook Configuration", "POST", _R, None, _N,
             _JSON, _f("webhookConfigs:list[object]"),
             example={"webhookConfigs": [{"modelName": "some-model",
                                          "workspaceName": "some-workspace",
                                          "webhookUrls": [{"url": "https://hooks.example.com/a",
                                                           "header": {"Other": "info"}}]}]}),
    # --- not in the seed; wire §2, second table -------------------------------------------
    Endpoint("backend-version", "Backend version", "GET", Base.ROOT, "clientlib/isAlive/ver", _N,
             _GET, seed=False),
    Endpoint("experiment-metadata", "Experiment metadata", "GET", _R, "experiment/metadata", _Q,
             _GET, seed=False, note="throttle flag, name, project"),
    # Not in the seed: comet_ml 3.58.8's API.get_default_workspace reads it (connection_api.py
    # get_account_details: GET rest/v2/account-details, no parameters).
    Endpoint("account-details", "Account details", "GET", _R, "account-details", _N, _GET,
             seed=False, note="the API key's userName and defaultWorkspaceName"),
    Endpoint("add-run", "Live handshake", "POST", _CL, "logger/add/run", _B, _JSON,
             _f("local_timestamp:int", "offline:bool", "projectName:str?", "teamName:str?",
                "libVersion"),
             _f("getOrCreateEnabled:bool"), api_key_in_body=True, seed=False,
             example={"local_timestamp": 1700000000500, "offline": False,
                      "projectName": "proj", "teamName": "ws", "libVersion": "0.1.0",
                      "getOrCreateEnabled": True}),
    Endpoint("get-run", "Resume a run", "POST", _CL, "logger/get/run", _B, _JSON,
             _f("local_timestamp:int", "offline:bool", "libVersion"), api_key_in_body=True,
             seed=False, example={"local_timestamp": 1700000000500, "offline": True,
                                  "libVersion": "0.1.0"},
             note="shape from the SDK source only; not captured"),
    Endpoint("status-report", "Live heartbeat", "POST", _CL, "status-report/update", _B, _JSON,
             _f("runId", "projectId:str?", "is_alive:bool", "local_timestamp:int",
                "offline:bool"),
             api_key_in_body=True, seed=False,
             example={"runId": "someRunId", "projectId": "someProjectId", "is_alive": True,
                      "local_timestamp": 1700000000500, "offline": False}),
    Endpoint("offline-metadata", "Offline start and end times", "POST", _CL,
             "status-report/offline-metadata", _B, _JSON,
             _f("runId", "startTimestamp:int?", "endTimestamp:int?"), api_key_in_body=True,
             seed=False, example={"runId": "someRunId", "startTimestamp": 1700000000500,
                                  "endTimestamp": 1700000060500}),
    Endpoint("log-metric-batch", "Metric batch", "POST", _CL, "batch/logger/experiment/metric",
             _B, _JSON, _f("values:list[object]"), gzip=True, seed=False,
             example={"values": [{"metricName": "sys.cpu.percent.avg", "metricValue": 12.5,
                                  "step": None, "epoch": None, "context": None,
                                  "timestamp": 1700000000500}]}),
    Endpoint("log-parameter-batch", "Parameter batch", "POST", _CL,
             "batch/logger/experiment/parameter", _B, _JSON, _f("values:list[object]"),
             gzip=True, seed=False,
             example={"values": [{"parameterName": "lr", "parameterValue": 0.1, "step": None,
                                  "source": "manual", "context": None,
                                  "timestamp": 1700000000500}]}),
    Endpoint("health-ping", "Connectivity probe", "GET", _CL, "health/ping", _N, _GET,
             seed=False),
    Endpoint("mark-not-throttled", "Clear the throttled flag", "POST", _R,
             "write/experiment/{experimentKey}/mark-not-throttled", _P, _JSON, seed=False),
    Endpoint("update-status", "Error status", "POST", _R, "write/experiment/update-status", _B,
             _JSON, _f("isAlive:bool", "error:str?", "hasCrashed:bool"), seed=False,
             example={"isAlive": False, "error": "exit code 3", "hasCrashed": True},
             note="from the SDK source; not captured"),
)
# fmt: on

ENDPOINTS: Mapping[str, Endpoint] = {row.name: row for row in _ROWS}


def get(name: str) -> Endpoint:
    """Return the endpoint called `name`, or raise KeyError."""
    return ENDPOINTS[name]


def seed_endpoints() -> Iterable[Endpoint]:
    """Yield the endpoints of the seed document, in its order."""
    return (row for row in _ROWS if row.seed)
