"""The experiment-level facts sent once at start, as FACT messages (never dropped at the cap).

The leader (the only agent, or global rank 0 of a distributed job) sends the
start time (when the agent owns the run), Set System Details, git metadata
and patch, the file path and cloud details. A follower sends its node's facts
only, as node-qualified entries of ``logAdditionalSystemInfoList``, so several
agents in one experiment do not overwrite each other's host fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.api import bodies
from agent.collect.base import Roots
from agent.config import Settings
from agent.errors import CollectorError
from agent.lifecycle.multinode import Identity
from agent.message import Kind, Message

if TYPE_CHECKING:
    from agent.collect.cloud import CloudInfo
    from agent.collect.git import GitInfo


@dataclass(frozen=True)
class StartFacts:
    """What the collectors found, ready to become messages."""

    system_details: Mapping[str, object]
    git_metadata: Mapping[str, object] | None = None
    git_patch_zip: bytes | None = None
    file_path: str | None = None
    cloud_details: Mapping[str, object] | None = None
    notes: Sequence[str] = field(default_factory=tuple)


def gather(
    settings: Settings,
    *,
    command: Sequence[str],
    pid: int,
    python: str | None = None,
    roots: Roots | None = None,
    gpu_static_info: Sequence[Mapping[str, object]] | None = None,
    gpu_additional: Sequence[Mapping[str, object]] = (),
    with_git: bool = True,
) -> StartFacts:
    """Collect every fact sent once: system details (with cgroup, GPU, cloud facts) and git."""
    from agent.collect import cgroup, static

    roots = roots or Roots()
    notes: list[str] = []
    extra: list[tuple[str, object]] = [("comet_agent_version", __version__)]
    try:
        extra.extend(cgroup.describe(roots, pid))
    except CollectorError as exc:
        notes.append(f"cgroup: {exc}")
    extra.extend((str(item.get("key")), item.get("value")) for item in gpu_additional)
    cloud = static.cloud_details(settings) if settings.cloud_probe else None
    if cloud is not None:
        extra.extend(cloud.facts())
    # A fact with no value (no CPU quota, say) is left out: the offline format (wire §6.3
    # system_info) has no null, and "absent" reads the same online.
    extra = [(key, value) for key, value in extra if value is not None]
    details: dict[str, object] = {}
    if settings.system_details:
        target = static.Target(command=list(command), pid=pid, python=python)
        fields, more = static.system_details(
            settings, target, extra_info=extra, gpu_static_info=gpu_static_info, roots=roots
        )
        details = bodies.system_details(**fields)
        notes.extend(more)
    metadata: dict[str, object] | None = None
    patch = None
    if with_git and (settings.git_metadata or settings.git_patch):
        git = static.git_facts(settings, settings.git_directory or Path.cwd())
        metadata = None if git.metadata is None else git_metadata_body(git.metadata)
        patch = git.patch
        notes.extend(git.notes)
    cloud_body = None if cloud is None else cloud_details_body(cloud)
    return StartFacts(details, metadata, patch, script_path(command), cloud_body, tuple(notes))


def git_metadata_body(info: GitInfo) -> dict[str, object]:
    """The set-git-metadata body for what the repository gave."""
    return bodies.git_metadata(
        user=info.user, root=info.root, branch=info.branch, parent=info.parent, origin=info.origin
    )


def cloud_details_body(cloud: CloudInfo) -> dict[str, object]:
    """The set-cloud-details body for what the metadata service said."""
    return bodies.cloud_details(
        cloud.provider, instance_type=cloud.instance_type, region=cloud.region, zone=cloud.zone
    )


def start_messages(
    facts: StartFacts,
    experiment_key: str,
    *,
    identity: Identity,
    leader: bool,
    owned: bool,
    started_ms: int,
) -> list[Message]:
    """Return the FACT messages to queue at start."""

    def msg(endpoint: str, body: Mapping[str, object], attachment: bytes | None = None) -> Message:
        return Message(endpoint, experiment_key, body, started_ms, Kind.FACT, attachment)

    out: list[Message] = []
    if not leader:
        details = node_details(facts.system_details, identity)
        if details:
            out.append(msg("set-system-details", bodies.system_details(additional=details)))
        return out
    if owned:
        out.append(msg("set-start-end-time", bodies.start_end_time(started_ms, None)))
    details_body = dict(facts.system_details)
    if identity.distributed:
        extra = list(_as_list(details_body.get("logAdditionalSystemInfoList")))
        extra.extend(node_details(facts.system_details, identity))
        details_body["logAdditionalSystemInfoList"] = extra
    if details_body:
        out.append(msg("set-system-details", details_body))
    if facts.git_metadata is not None:
        out.append(msg("set-git-metadata", facts.git_metadata))
    if facts.git_patch_zip:
        out.append(msg("upload-git-patch", {}, facts.git_patch_zip))
    if facts.file_path:
        out.append(msg("set-file-path", {"filePath": facts.file_path}))
    if facts.cloud_details:
        out.append(msg("set-cloud-details", facts.cloud_details))
    out.append(msg("log-other", bodies.log_other("comet_agent_version", __version__)))
    return out


def node_details(
    system_details: Mapping[str, object], identity: Identity
) -> list[dict[str, object]]:
    """This node's host facts as node-qualified ``{"key", "value"}`` entries."""
    entries: list[dict[str, object]] = []

    def add(key: str, value: object) -> None:
        if isinstance(value, str | int | float | bool):
            entries.append({"key": identity.qualify(key), "value": value})

    add("hostname", system_details.get("hostname"))
    add("ip", system_details.get("ip"))
    add("pid", system_details.get("pid"))
    if identity.rank is not None:
        add("rank", identity.rank)
    if identity.local_rank is not None:
        add("local_rank", identity.local_rank)
    for item in _as_list(system_details.get("logAdditionalSystemInfoList")):
        if isinstance(item, Mapping) and identity.distributed:
            add(str(item.get("key")), item.get("value"))
    for gpu in _as_list(system_details.get("gpuStaticInfoList")):
        if isinstance(gpu, Mapping):
            index = gpu.get("gpu_index")
            for name in ("name", "uuid", "total_memory", "power_limit"):
                add(f"gpu.{index}.{name}", gpu.get(name))
    return entries if identity.distributed else []


def script_path(command: Sequence[str]) -> str | None:
    """The training script of a command like ``python train.py`` (wire §3.4 REC), if any."""
    for arg in command[1:] if command and Path(command[0]).name.startswith("python") else command:
        if arg.startswith("-"):
            if arg in ("-m", "-c"):
                return None
            continue
        if arg.endswith(".py"):
            return str(Path(arg).resolve())
        break
    return None


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []
