"""Cgroups: where a process's cgroup lives, its CPU and memory limits, usage, throttling, OOM kills.

``find_cgroup`` resolves the directories once (v1, v2 or hybrid); the
``read_*`` functions then read one or two small files each, per sample. Every
``parse_*`` function is pure and takes the text of one kernel file. A limit of
"max" (v2), -1 or the huge v1 sentinel (v1) is ``None``: no limit.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from agent.collect.base import Roots, read_kept, read_small
from agent.errors import CollectorError, NoData

V1, V2, HYBRID = "v1", "v2", "hybrid"
# v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes (0x7FFFFFFFFFFFF000 with 4 KiB
# pages, a little less with 64 KiB ones); nothing real comes near 2**62 bytes.
_V1_UNLIMITED = 1 << 62
_OCTAL = re.compile(rb"\\([0-3][0-7]{2})")


@dataclass(frozen=True)
class Mount:
    """One cgroup file system in /proc/<pid>/mountinfo."""

    root: str  # the cgroup path at the mount's root ("/" unless a container bind-mounts its own)
    mount_point: str  # where it is mounted, as the reading process sees it
    version: str  # V1 or V2
    controllers: frozenset[str]  # v1: from the super options ("cpu", "cpuacct", ...)


@dataclass(frozen=True)
class Cgroup:
    """A process's cgroup, its directories resolved once."""

    version: str  # V1, V2 or HYBRID
    path: str  # the cgroup path as /proc/<pid>/cgroup gives it (v2's, else v1 memory's)
    cpu: Path | None  # cpu.max (v2) or cpu.cfs_quota_us, cpu.stat (v1)
    cpuacct: Path | None  # where CPU usage is: v2's directory, v1's cpuacct controller
    memory: Path | None
    unified: Path | None  # the v2 directory, for PSI (also on hybrid hosts)
    cpu_v2: bool = False  # cpu (and cpuacct) files are v2's (cpu.max, cpu.stat in usec)
    memory_v2: bool = False  # memory files are v2's (memory.max, memory.current, ...)
    # Where a parent's limit binds tighter than our own (a systemd slice, a Slurm job), the
    # cpu and memory directories above are that parent's, and these name it; else None.
    cpu_limit_path: str | None = None
    memory_limit_path: str | None = None
    _files: dict[tuple[str, str], Path] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def file(self, where: str, name: str) -> Path:
        """Return file `name` of directory `where` (cpu, cpuacct, memory, unified); NoData if none.

        Each path is joined once and kept: a sample reads a handful of files, and
        pathlib's "/" costs about as much as reading a small cgroup file.
        """
        path = self._files.get((where, name))
        if path is None:
            directory: Path | None = getattr(self, where)
            if directory is None:
                raise NoData(f"no cgroup {where} directory here (for {name})")
            path = self._files[(where, name)] = directory / name
        return path


@dataclass(frozen=True)
class CpuStat:
    """CPU usage and CFS throttling counters of a cgroup, in nanoseconds."""

    usage_ns: int
    nr_periods: int
    nr_throttled: int
    throttled_ns: int


# ---------------------------------------------------------------------------------------------
# Pure parsers


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Return controller → cgroup path from /proc/<pid>/cgroup; "" is v2's unified hierarchy."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            raise CollectorError(f"/proc/<pid>/cgroup: unexpected line {line[:60]!r}")
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    if not out:
        raise CollectorError("/proc/<pid>/cgroup is empty; is this a Linux host?")
    return out


def parse_mountinfo(text: str) -> list[Mount]:
    """Return the cgroup mounts listed in /proc/<pid>/mountinfo, in order."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        if "cgroup" not in line:
            continue  # cheap pre-filter: a host can have thousands of mounts
        fields = line.split()
        try:
            dash = fields.index("-", 6)
            fstype, super_opts = fields[dash + 1], fields[dash + 3]
        except (ValueError, IndexError):
            raise CollectorError(f"mountinfo: unexpected line {line[:60]!r}") from None
        if fstype == "cgroup2":
            mounts.append(Mount(_unescape(fields[3]), _unescape(fields[4]), V2, frozenset()))
        elif fstype == "cgroup":
            controllers = frozenset(super_opts.split(",")) - {"rw", "ro"}
            mounts.append(Mount(_unescape(fields[3]), _unescape(fields[4]), V1, controllers))
    return mounts


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...), and
    # nothing else: any other backslash is taken as it stands.
    if "\\" not in field:
        return field
    raw = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field.encode())
    return raw.decode("utf-8", "replace")


def _number(word: str) -> int:
    """Return the integer in `word`; ValueError unless a 64-bit kernel value can hold it."""
    value = int(word)
    if not -(1 << 63) <= value < 1 << 64:
        raise ValueError(word)
    return value


def parse_cpu_max(text: str) -> float | None:
    """Return the CPU quota in CPUs from v2 cpu.max ("250000 100000" → 2.5; "max ..." → None)."""
    parts = text.split()
    if len(parts) == 2 and parts[0] == "max":
        return None
    try:
        quota, period = _number(parts[0]), _number(parts[1])
    except (IndexError, ValueError):
        raise CollectorError(f"cpu.max: unexpected content {text[:40]!r}") from None
    if period <= 0 or quota <= 0:
        raise CollectorError(f"cpu.max: unexpected content {text[:40]!r}")
    return quota / period


def parse_cfs_quota(quota_text: str, period_text: str | None) -> float | None:
    """Return the CPU quota in CPUs from v1 cpu.cfs_quota_us and cpu.cfs_period_us (-1 → None).

    ``period_text`` may be None when the quota is -1 (no need to read the period then).
    """
    quota = parse_int(quota_text, "cpu.cfs_quota_us")
    if quota < 0:
        return None
    period = parse_int(period_text or "", "cpu.cfs_period_us")
    if period <= 0 or quota == 0:
        raise CollectorError(f"cpu.cfs_quota_us {quota} / cpu.cfs_period_us {period}: not a quota")
    return quota / period


def parse_memory_limit(text: str) -> int | None:
    """Return the memory limit in bytes (v2 memory.max, v1 memory.limit_in_bytes); None: none."""
    word = text.strip()
    if word == "max":
        return None
    limit = parse_int(word, "memory limit")
    return None if limit < 0 or limit >= _V1_UNLIMITED else limit


def parse_int(text: str, what: str) -> int:
    """Return the one integer a cgroup file holds (memory.current, cpuacct.usage, ...)."""
    try:
        return _number(text.strip())
    except ValueError:
        raise CollectorError(f"{what}: expected a number, got {text[:40]!r}") from None


def parse_keyed(text: str, what: str) -> dict[str, int]:
    """Return the "key value" lines of memory.stat, cpu.stat, memory.events, memory.oom_control."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if not key:
            continue
        try:
            out[key] = _number(value)
        except ValueError:
            raise CollectorError(f"{what}: unexpected line {line[:60]!r}") from None
    if not out:
        raise CollectorError(f"{what} is empty")
    return out


def parse_psi_some_avg10(text: str) -> float:
    """Return "some avg10" from a PSI file (cpu.pressure, memory.pressure, /proc/pressure/*)."""
    for line in text.splitlines():
        if line.startswith("some "):
            for word in line.split()[1:]:
                if word.startswith("avg10="):
                    try:
                        value = float(word[6:])
                    except ValueError:
                        break
                    if math.isfinite(value) and value >= 0:  # a share of time, in percent
                        return value
                    break
    raise CollectorError(f"pressure file: no 'some avg10=' in {text[:60]!r}")


# ---------------------------------------------------------------------------------------------
# Finding the cgroup


def find_cgroup(roots: Roots = Roots(), pid: int | None = None, *, climb: bool = True) -> Cgroup:
    """Resolve the cgroup directories of `pid` (None: this process); NoData if there are none.

    With `climb`, the cpu and memory directories are those of the parent whose limit binds
    (see ``_tightest``); without, always the process's own.
    """
    who = "self" if pid is None else str(pid)
    paths = parse_proc_cgroup(read_small(roots.proc / who / "cgroup"))
    # Mounts come from *our* mountinfo: /proc/<pid>/cgroup is written relative to the reader's
    # cgroup namespace, so our own mount table is the one that matches it (a sidecar agent
    # looking at a pid in another container must not use that container's mount table).
    try:
        mounts = parse_mountinfo(read_small(roots.proc / "self" / "mountinfo"))
    except NoData:
        mounts = parse_mountinfo(read_small(roots.proc / who / "mountinfo"))
    v2 = next((m for m in mounts if m.version == V2), None)
    v1 = {c: m for m in reversed(mounts) if m.version == V1 for c in m.controllers}
    if v2 is None and not v1:
        raise NoData("no cgroup file system is mounted")
    unified = _directory(roots, v2, paths[""]) if v2 is not None and "" in paths else None

    def controller(name: str) -> tuple[Path, Path] | None:
        """The directory of controller `name` and the top of its hierarchy as mounted here."""
        if name in v1 and name in paths:
            mount = v1[name]
            return _directory(roots, mount, paths[name]), _under_roots(roots, mount.mount_point)
        if not v1 and unified is not None and v2 is not None:
            return unified, _under_roots(roots, v2.mount_point)
        return None

    version = HYBRID if v2 is not None and v1 else (V2 if v2 is not None else V1)
    path = paths.get("memory", paths.get("cpu", "/")) if v1 else paths.get("", "/")
    cpu, cpuacct, memory = controller("cpu"), controller("cpuacct"), controller("memory")
    cpu_v2 = cpu is not None and cpu[0] == unified
    memory_v2 = memory is not None and memory[0] == unified
    cpu_dir = cpuacct_dir = cpu_from = memory_dir = memory_from = None
    if cpu is not None:
        cpu_dir = _tightest(*cpu, partial(_quota_in, v2=cpu_v2)) if climb else cpu[0]
        cpu_from = _moved(cpu, cpu_dir)
    if cpuacct is not None:
        # Usage is read where the quota is, so the two describe the same processes.
        cpuacct_dir = cpu_dir if cpu is not None and cpuacct[0] == cpu[0] else cpuacct[0]
    if memory is not None:
        memory_dir = (
            _tightest(*memory, partial(_memory_limit_in, v2=memory_v2)) if climb else memory[0]
        )
        memory_from = _moved(memory, memory_dir)
    return Cgroup(
        version=version,
        path=path,
        cpu=cpu_dir,
        cpuacct=cpuacct_dir,
        memory=memory_dir,
        unified=unified,
        cpu_v2=cpu_v2,
        memory_v2=memory_v2,
        cpu_limit_path=cpu_from,
        memory_limit_path=memory_from,
    )


def _tightest(directory: Path, top: Path, limit_in: Callable[[Path], float | None]) -> Path:
    """`directory` or the ancestor (below `top`, the mount) with the lowest limit.

    A limit set on a parent (a systemd slice with MemoryMax=, a Slurm job's
    cgroup above its steps and tasks) binds every process below it, while the
    process's own cgroup reads "max". The lowest limit on the way up is the one
    that binds first.
    """
    best, best_limit = directory, limit_in(directory)
    for here in directory.parents:
        if top not in here.parents:
            break  # the mount's root (the host's root cgroup has no limit files), or above it
        limit = limit_in(here)
        if limit is not None and (best_limit is None or limit < best_limit):
            best, best_limit = here, limit
    return best


def _moved(found: tuple[Path, Path], chosen: Path) -> str | None:
    """The cgroup path (relative to the mount) of `chosen` when it is a parent, else None."""
    own, top = found
    if chosen == own:
        return None
    return "/" + str(chosen.relative_to(top)) if chosen != top else "/"


def _quota_in(directory: Path, *, v2: bool) -> float | None:
    try:
        if v2:
            return parse_cpu_max(read_small(directory / "cpu.max"))
        quota = read_small(directory / "cpu.cfs_quota_us")
        if quota.lstrip().startswith("-"):
            return None
        return parse_cfs_quota(quota, read_small(directory / "cpu.cfs_period_us"))
    except CollectorError:
        return None  # unreadable or odd: this level sets no limit we can use


def _memory_limit_in(directory: Path, *, v2: bool) -> float | None:
    name = "memory.max" if v2 else "memory.limit_in_bytes"
    try:
        return parse_memory_limit(read_small(directory / name))
    except CollectorError:
        return None


def find_cgroup_or_none(roots: Roots = Roots(), pid: int | None = None) -> Cgroup | None:
    """Return the cgroup of `pid`, or None where there is none to read (not Linux, no mount)."""
    try:
        return find_cgroup(roots, pid)
    except CollectorError:
        return None


def _directory(roots: Roots, mount: Mount, cgroup_path: str) -> Path:
    """Where `cgroup_path` of `mount`'s hierarchy is, under `roots`."""
    base = _under_roots(roots, mount.mount_point)
    root = mount.root.rstrip("/")
    if cgroup_path == root or cgroup_path.startswith(root + "/"):
        rel = cgroup_path[len(root) :].lstrip("/")
    else:
        rel = ""  # outside the mount's subtree ("/../.."): a container sees itself at the root
    if rel and "/.." not in "/" + rel:
        found = base / rel
        with contextlib.suppress(OSError):  # a name too long, say: not a directory we can use
            if found.is_dir():
                return found
    # In a container the cgroup file often names the host's path ("/docker/<id>") while the
    # container's own cgroup is mounted at the root of its /sys/fs/cgroup.
    return base


def _under_roots(roots: Roots, mount_point: str) -> Path:
    if mount_point == "/sys" or mount_point.startswith("/sys/"):
        return roots.sys / mount_point[len("/sys/") :]
    return roots.root / mount_point.lstrip("/")


# ---------------------------------------------------------------------------------------------
# Reading, per sample


def read_cpu_quota(cg: Cgroup) -> float | None:
    """Return the CPU quota in CPUs, or None when there is none (or no CPU controller here)."""
    try:
        if cg.cpu_v2:
            return parse_cpu_max(read_kept(cg.file("cpu", "cpu.max")))
        quota = read_kept(cg.file("cpu", "cpu.cfs_quota_us"))
        if quota.lstrip().startswith("-"):
            return parse_cfs_quota(quota, None)  # -1: no quota, no period to read
        return parse_cfs_quota(quota, read_kept(cg.file("cpu", "cpu.cfs_period_us")))
    except NoData:
        return None  # the root cgroup, or the controller not enabled: nothing limits us


def read_cpu_stat(cg: Cgroup) -> CpuStat:
    """Return usage and throttling counters (ns); NoData where the cgroup does not count them."""
    if cg.cpuacct is not None and cg.cpu_v2:
        stat = parse_keyed(read_kept(cg.file("cpuacct", "cpu.stat")), "cpu.stat")
        if "usage_usec" not in stat:
            raise CollectorError(f"{cg.file('cpuacct', 'cpu.stat')}: no usage_usec")
        return CpuStat(
            usage_ns=stat["usage_usec"] * 1000,
            nr_periods=stat.get("nr_periods", 0),
            nr_throttled=stat.get("nr_throttled", 0),
            throttled_ns=stat.get("throttled_usec", 0) * 1000,
        )
    usage = parse_int(read_kept(cg.file("cpuacct", "cpuacct.usage")), "cpuacct.usage")
    stat = {}
    with contextlib.suppress(NoData):  # v1 cpuacct without the cpu controller: no throttling
        stat = parse_keyed(read_kept(cg.file("cpu", "cpu.stat")), "cpu.stat")
    return CpuStat(
        usage_ns=usage,
        nr_periods=stat.get("nr_periods", 0),
        nr_throttled=stat.get("nr_throttled", 0),
        throttled_ns=stat.get("throttled_time", 0),
    )


def read_memory_limit(cg: Cgroup) -> int | None:
    """Return the memory limit in bytes, or None when there is none."""
    name = "memory.max" if cg.memory_v2 else "memory.limit_in_bytes"
    try:
        return parse_memory_limit(read_kept(cg.file("memory", name)))
    except NoData:
        return None


def read_memory_usage(cg: Cgroup) -> tuple[int, Mapping[str, int]]:
    """Return the cgroup's memory usage in bytes and its memory.stat."""
    name = "memory.current" if cg.memory_v2 else "memory.usage_in_bytes"
    usage = parse_int(read_kept(cg.file("memory", name)), name)
    return usage, parse_keyed(read_kept(cg.file("memory", "memory.stat")), "memory.stat")


def working_set(cg: Cgroup, usage: int, stat: Mapping[str, int]) -> int:
    """Return usage minus inactive page cache: what docker stats and the kubelet call used."""
    key = "inactive_file" if cg.memory_v2 else "total_inactive_file"
    return max(0, usage - stat.get(key, stat.get("inactive_file", 0)))


def read_memory_events(cg: Cgroup) -> dict[str, int]:
    """Return memory.events (v2: low, high, max, oom, oom_kill) or v1's memory.oom_control."""
    name = "memory.events" if cg.memory_v2 else "memory.oom_control"
    return parse_keyed(read_kept(cg.file("memory", name)), name)


def read_pressure(cg: Cgroup | None, resource: str, roots: Roots = Roots()) -> float:
    """Return PSI "some avg10" (percent) of `resource` (cpu, memory, io); NoData without PSI.

    The cgroup's own pressure where the unified hierarchy is mounted, else the host's
    (/proc/pressure), which is also what a process on a v1 host is subject to.
    """
    if cg is not None and cg.unified is not None:
        return parse_psi_some_avg10(read_kept(cg.file("unified", f"{resource}.pressure")))
    return parse_psi_some_avg10(read_kept(roots.proc / "pressure" / resource))


def oom_kill_count(roots: Roots = Roots(), pid: int | None = None) -> int | None:
    """Return how many processes of `pid`'s cgroup the OOM killer has killed; None: unknown.

    The process's own cgroup, even under a parent's limit: the parent's count would also
    take in its siblings' kills (v2 counts a kill in the victim's cgroup and every parent).
    """
    try:
        return read_memory_events(find_cgroup(roots, pid, climb=False)).get("oom_kill")
    except CollectorError:
        return None


# ---------------------------------------------------------------------------------------------
# Which view the samplers use


def cpu_limit_binds(quota: float | None, host_cpus: int) -> bool:
    """Whether a CPU quota limits us below the host (a 16-CPU quota on 8 CPUs does not)."""
    return quota is not None and quota < host_cpus


def memory_limit_binds(limit: int | None, host_total: int) -> bool:
    """Whether a memory limit is below the host's memory (else the host's figures are the truth)."""
    return limit is not None and limit < host_total


def host_cpus(roots: Roots = Roots()) -> int:
    """Return the number of online logical CPUs, from /proc/stat's cpuN lines."""
    try:
        text = read_small(roots.proc / "stat")
    except NoData:
        return os.cpu_count() or 1
    count = sum(1 for line in text.splitlines() if line[:3] == "cpu" and line[3:4].isdigit())
    return count or os.cpu_count() or 1


def host_memory(roots: Roots = Roots()) -> int:
    """Return MemTotal in bytes from /proc/meminfo."""
    for line in read_small(roots.proc / "meminfo").splitlines():
        if line.startswith("MemTotal:"):
            words = line.split()  # "MemTotal:  32768000 kB"
            return parse_int(words[1] if len(words) > 1 else "", "MemTotal") * 1024
    raise CollectorError(f"{roots.proc / 'meminfo'}: no MemTotal line")


def describe(roots: Roots = Roots(), pid: int | None = None) -> list[tuple[str, object]]:
    """Return the cgroup facts for Set System Details' logAdditionalSystemInfoList."""
    try:
        cg = find_cgroup(roots, pid)
    except CollectorError:
        return [
            ("cgroup_version", "none"),
            ("cgroup_cpu_view", "host"),
            ("cgroup_memory_view", "host"),
        ]
    quota = read_cpu_quota(cg)
    limit = read_memory_limit(cg)
    try:
        memory_view = memory_limit_binds(limit, host_memory(roots))
    except CollectorError:
        memory_view = limit is not None
    return [
        ("cgroup_version", cg.version),
        ("cgroup_path", cg.path),
        ("cgroup_cpu_quota", quota),
        ("cgroup_memory_limit_bytes", limit),
        ("cgroup_cpu_view", "cgroup" if cpu_limit_binds(quota, host_cpus(roots)) else "host"),
        ("cgroup_memory_view", "cgroup" if memory_view else "host"),
        *[(f"cgroup_{what}_limit_from", where) for what, where in
          (("cpu", cg.cpu_limit_path), ("memory", cg.memory_limit_path)) if where],
    ]  # fmt: skip
