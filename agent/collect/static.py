"""The facts sent once per experiment: system details, git metadata and patch, cloud details.

Each fact is read on its own: one that fails is left out and a note says
why (for the caller to log), so a missing /proc file or an odd git setup
never costs the rest. The additional-info keys are stable snake_case names:
cpu_model, cpu_count_logical, cpu_count_physical, ram_total_bytes, kernel,
boot_time_ms, os_distribution, container_runtime, python_source (and
cloud_provider, cloud_instance_type when the caller passes the cloud facts in).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.collect import cloud, git, host, ospackages, packages
from agent.collect.base import Roots
from agent.config import Settings
from agent.errors import CollectorError


@dataclass(frozen=True)
class Target:
    """The process being monitored."""

    command: list[str]  # argv of the wrapped/watched command, else the agent's own
    pid: int
    python: str | None = None  # interpreter path when known

    @classmethod
    def agent(cls) -> Target:
        """The agent itself, when it watches no other process."""
        return cls(command=list(sys.argv), pid=os.getpid())


@dataclass(frozen=True)
class GitFacts:
    """What the repository gives: its metadata, the zipped patch, notes for the log."""

    metadata: git.GitInfo | None
    patch: bytes | None  # a zip with one member, git_diff.patch
    notes: list[str]


def _scalar(value: object) -> object:
    # logAdditionalSystemInfoList takes scalars only (wire §3.3).
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def additional_facts(
    roots: Roots, env: Mapping[str, str]
) -> tuple[list[tuple[str, object]], list[str]]:
    """Return the host facts that have no field of their own, and notes on the ones left out."""
    facts: list[tuple[str, object]] = []
    notes: list[str] = []

    def add(key: str, read: Callable[[], object]) -> None:
        try:
            value = read()
        except CollectorError as exc:
            notes.append(f"{key}: {exc}")
            return
        facts.append((key, value))

    try:
        cpu = host.read_cpu(roots)
    except CollectorError as exc:
        notes.append(f"cpu: {exc}")
    else:
        facts += [
            ("cpu_model", cpu.model),
            ("cpu_count_logical", cpu.logical),
            ("cpu_count_physical", cpu.physical),
        ]
    add("ram_total_bytes", lambda: host.read_ram_total(roots))
    add("kernel", lambda: host.read_kernel(roots))
    add("boot_time_ms", lambda: host.read_boot_time_ms(roots))
    add("os_distribution", lambda: host.read_os_distribution(roots))
    add("container_runtime", lambda: host.read_container(roots, env) or "none")
    return [(k, v) for k, v in facts if v is not None], notes


def system_details(
    settings: Settings,
    target: Target,
    *,
    comet_host: str | None = None,
    extra_info: Sequence[tuple[str, object]] = (),
    gpu_static_info: Sequence[Mapping[str, object]] | None = None,
    roots: Roots = Roots(),  # frozen, so one shared default is safe
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[dict[str, object], list[str]]:
    """Return the set-system-details body and notes for the log.

    `comet_host` (a URL or host[:port]; default the configured server) is where the
    ``ip`` field's socket points. `env` and `cwd` are the target's (default the agent's),
    used to find its Python on PATH.
    """
    env = os.environ if env is None else env
    notes: list[str] = []
    fields = host.host_fields(comet_host or settings.url_override)
    if target.pid == os.getpid() and target.python is None:
        python = packages.agent_python()  # the agent is the target: nothing to probe
    else:
        python, py_notes = packages.python_env(
            target.command, python=target.python, env=env, cwd=cwd
        )
        notes += py_notes
    facts, fact_notes = additional_facts(roots, env)
    notes += fact_notes
    facts.append(("python_source", python.source))
    facts.extend(extra_info)
    details: dict[str, object] = {
        "command": list(target.command),
        "env": None,  # always null, as the SDK sends it (wire §3.3)
        **fields,
        "executable": python.executable,
        "pid": target.pid,
        "python_version": python.version,
        "python_version_verbose": python.version_verbose,
        "installed_packages": list(python.packages),
        "additional": [{"key": k, "value": _scalar(v)} for k, v in facts],
    }
    try:
        details["os_packages"] = ospackages.read_os_packages(roots)
    except CollectorError as exc:
        notes.append(f"os packages: {exc}")
    try:
        details["network_interface_ips"] = host.interface_ips()
    except OSError as exc:
        notes.append(f"network interfaces: {exc}")
    if gpu_static_info is not None:
        details["gpu_static_info"] = [dict(g) for g in gpu_static_info]
    return details, notes


def git_facts(settings: Settings, cwd: Path, env: Mapping[str, str] | None = None) -> GitFacts:
    """Return git metadata and the zipped patch of `[git] directory` (default `cwd`)."""
    if not settings.git_metadata and not settings.git_patch:
        return GitFacts(None, None, [])
    runner = git.Git(settings.git_directory or cwd, settings.git_timeout_s, env)
    notes: list[str] = []
    metadata = None
    try:
        info, info_notes = git.read_git_info(runner)  # also proves this is a repository
    except CollectorError as exc:
        return GitFacts(None, None, [str(exc)])
    if settings.git_metadata:
        notes += info_notes
        metadata = info
    patch = None
    if settings.git_patch:
        try:
            diff, diff_notes = git.read_diff(runner, settings.patch_max_bytes)
        except CollectorError as exc:
            diff, diff_notes = None, [str(exc)]
        notes += diff_notes
        patch = git.zip_patch(diff) if diff else None
    return GitFacts(metadata, patch, notes)


def cloud_details(
    settings: Settings, *, base_url: str = cloud.METADATA_URL, budget_s: float = cloud.BUDGET_S
) -> cloud.CloudInfo | None:
    """Probe the cloud metadata service when ``[sampling] cloud_probe`` is on; None otherwise.

    The result's ``body()`` is the set-cloud-details body and its ``facts()`` go into
    ``system_details(extra_info=...)``.
    """
    if not settings.cloud_probe:
        return None
    return cloud.probe(base_url, budget_s)
