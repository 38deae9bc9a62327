"""The host's static facts: Set System Details' host fields and the extra facts sent once.

Pure ``parse_*`` functions read the text of one kernel or OS file; the
``read_*`` functions take ``Roots`` so tests point them at fixture trees. The
host fields (hostname, os, ip, ...) come from the running kernel through
``platform`` and ``socket``, the way the SDK fills them (wire §3.3).
"""

from __future__ import annotations

import getpass
import platform
import re
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import psutil

from agent.collect.base import Roots, read_small
from agent.errors import CollectorError, NoData

# lscpu's names for the ARM implementer and part codes we expect on ML hosts.
_ARM_IMPLEMENTERS = {
    "0x41": "ARM",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0xc0": "Ampere",
}
_ARM_PARTS = {
    ("0x41", "0xd03"): "Cortex-A53",
    ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x48", "0xd01"): "Kunpeng-920",
    ("0xc0", "0xac3"): "Ampere-1",
}
_CONTAINER_CGROUP_HINTS = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("docker", "docker"),
    ("/lxc", "lxc"),
    ("/ecs/", "ecs"),
    ("containerd", "containerd"),
)
_IP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the processors."""

    model: str | None
    logical: int
    physical: int | None  # None when cpuinfo has no core topology (most ARM kernels)


def parse_cpuinfo(text: str) -> CpuInfo:
    """Return the CPU model and core counts from the text of /proc/cpuinfo."""
    blocks = [_fields(block) for block in text.split("\n\n") if block.strip()]
    cpus = [b for b in blocks if "processor" in b and b["processor"].isdigit()]
    if not cpus:
        raise CollectorError(f"/proc/cpuinfo: no processor entries in {text[:40]!r}")
    first = cpus[0]
    cores = {(b.get("physical id"), b["core id"]) for b in cpus if "core id" in b}
    return CpuInfo(model=_cpu_model(first, blocks), logical=len(cpus), physical=len(cores) or None)


def _fields(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def _cpu_model(cpu: Mapping[str, str], blocks: Sequence[Mapping[str, str]]) -> str | None:
    if cpu.get("model name"):
        return cpu["model name"]
    implementer, part = cpu.get("CPU implementer"), cpu.get("CPU part")
    if implementer and part:
        vendor = _ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer}")
        return f"{vendor} {_ARM_PARTS.get((implementer, part), f'part {part}')}"
    # 32-bit ARM and POWER put the model in a trailing block or under other names.
    for key in ("Hardware", "cpu model", "cpu", "Processor"):
        for block in (cpu, *blocks):
            if block.get(key):
                return block[key]
    return None


def parse_topology(pairs: Sequence[tuple[str, str]]) -> int | None:
    """Return the number of physical cores from (package id, core id) pairs read in sysfs."""
    return len(set(pairs)) or None


def parse_meminfo_total(text: str) -> int:
    """Return MemTotal in bytes from the text of /proc/meminfo."""
    # At most 20 digits: a 64-bit value, and int() refuses strings past 4300 digits.
    match = re.search(r"^MemTotal:\s+(\d{1,20})\s*kB\s*$", text, re.MULTILINE)
    total = -1 if match is None else int(match.group(1)) * 1024
    if not 0 <= total < 1 << 63:  # bytes in a signed 64-bit number, as Comet keeps them
        raise CollectorError(f"/proc/meminfo: no MemTotal line in {text[:40]!r}")
    return total


def parse_btime(text: str) -> int:
    """Return the boot time in ms since the epoch from the text of /proc/stat."""
    match = re.search(r"^btime\s+(\d{1,15})\s*$", text, re.MULTILINE)  # ms fit 64 bits
    if match is None:
        raise CollectorError(f"/proc/stat: no btime line in {text[:40]!r}")
    return int(match.group(1)) * 1000


def parse_os_release(text: str) -> dict[str, str]:
    """Return the KEY=value pairs of an os-release file, quotes and escapes removed."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not key.isidentifier():
            continue  # comments and blank lines
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\([\\$"`])', r"\1", value[1:-1])  # the escapes the format allows
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        out[key] = value
    if not out:
        raise CollectorError(f"os-release: no KEY=value line in {text[:40]!r}")
    return out


def os_distribution(fields: Mapping[str, str]) -> str:
    """Return the distribution's display name: PRETTY_NAME, else NAME and VERSION."""
    if fields.get("PRETTY_NAME"):
        return fields["PRETTY_NAME"]
    name = " ".join(v for v in (fields.get("NAME"), fields.get("VERSION")) if v)
    if not name:
        raise CollectorError("os-release: neither PRETTY_NAME nor NAME is set")
    return name


def parse_init_environ(data: str) -> str | None:
    """Return the ``container=`` value systemd and most runtimes set for PID 1, if any."""
    for item in data.split("\0"):
        if item.startswith("container="):
            return item.removeprefix("container=") or None
    return None


def parse_cgroup_container(text: str) -> str | None:
    """Return the container runtime that /proc/1/cgroup's paths betray, if any."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for hint, runtime in _CONTAINER_CGROUP_HINTS:
            if hint in path:
                return runtime
    return None


def read_cpu(roots: Roots) -> CpuInfo:
    """Read /proc/cpuinfo, with the physical core count from sysfs when cpuinfo lacks it."""
    info = parse_cpuinfo(read_small(roots.proc / "cpuinfo"))
    if info.physical is not None:
        return info
    pairs = []
    for topo in sorted((roots.sys / "devices" / "system" / "cpu").glob("cpu[0-9]*/topology")):
        try:
            pairs.append(
                (
                    read_small(topo / "physical_package_id").strip(),
                    read_small(topo / "core_id").strip(),
                )
            )
        except NoData:
            continue
    return CpuInfo(info.model, info.logical, parse_topology(pairs))


def read_ram_total(roots: Roots) -> int:
    """Return the host's total RAM in bytes."""
    return parse_meminfo_total(read_small(roots.proc / "meminfo"))


def read_kernel(roots: Roots) -> str:
    """Return the kernel's release and version, as ``uname -rv`` prints them."""
    kernel = roots.proc / "sys" / "kernel"
    release = read_small(kernel / "osrelease").strip()
    version = read_small(kernel / "version").strip()
    if not release:
        raise CollectorError(f"{kernel / 'osrelease'} is empty")
    return f"{release} {version}".strip()


def read_boot_time_ms(roots: Roots) -> int:
    """Return when the host booted, in ms since the epoch."""
    return parse_btime(read_small(roots.proc / "stat"))


def read_os_distribution(roots: Roots) -> str:
    """Return the distribution's name from /etc/os-release (or /usr/lib/os-release)."""
    etc, usr = roots.root / "etc" / "os-release", roots.root / "usr" / "lib" / "os-release"
    try:
        text = read_small(etc)
    except NoData:
        try:
            text = read_small(usr)
        except NoData:
            raise NoData(f"neither {etc} nor {usr} exists") from None
    return os_distribution(parse_os_release(text))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a directory we may not search: as good as absent
        return False


def read_container(roots: Roots, env: Mapping[str, str]) -> str | None:
    """Return the container runtime the agent runs under, or None on a bare host."""
    if env.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if _exists(roots.root / "run" / ".containerenv"):
        return "podman"
    if _exists(roots.root / ".dockerenv"):
        return "docker"
    try:  # readable only by PID 1's owner: an unprivileged agent on the host skips it
        found = parse_init_environ(read_small(roots.proc / "1" / "environ"))
    except CollectorError:
        found = None
    if found:
        return found
    try:
        return parse_cgroup_container(read_small(roots.proc / "1" / "cgroup"))
    except CollectorError:
        return None


def split_host(comet: str) -> tuple[str, int]:
    """Return (host, port) from a URL or ``host[:port]``; the port defaults by scheme, else 443."""
    parts = urlsplit(comet if "://" in comet else f"//{comet}")
    if not parts.hostname:
        raise CollectorError(f"cannot find a host name in {comet!r}")
    default = 80 if parts.scheme == "http" else 443
    try:
        port = parts.port or default
    except ValueError:
        port = default
    return parts.hostname, port


def local_ip(host: str, port: int, timeout_s: float = _IP_TIMEOUT_S) -> str | None:
    """Return the local address a UDP socket "connected" to host:port would use (no packet sent).

    Name resolution may hang, so it runs in a daemon thread given `timeout_s`.
    """
    result: list[str] = []

    def find() -> None:
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            with socket.socket(family, kind, proto) as sock:
                sock.connect(addr)
                result.append(str(sock.getsockname()[0]))
        except (OSError, IndexError):
            return

    worker = threading.Thread(target=find, name="local-ip", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return result[0] if result else None


class _Address(Protocol):
    @property
    def family(self) -> int: ...

    @property
    def address(self) -> str: ...


def interface_ips(
    net_if_addrs: Callable[[], Mapping[str, Sequence[_Address]]] = psutil.net_if_addrs,
) -> list[str]:
    """Return every IPv4 and IPv6 address of every interface, loopback included, sorted."""
    families = (socket.AF_INET, socket.AF_INET6)
    found = {a.address for addrs in net_if_addrs().values() for a in addrs if a.family in families}
    return sorted(found)


def user_name() -> str:
    """Return the login name, as the SDK does: ``getpass.getuser()``, "unknown" on failure."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"


def host_fields(comet_host: str) -> dict[str, object]:
    """Return the host fields of Set System Details, snake_case, for ``bodies.system_details``."""
    uname = platform.uname()
    try:
        ip = local_ip(*split_host(comet_host))
    except CollectorError:
        ip = None
    return {
        "hostname": socket.gethostname(),
        "ip": ip,
        "machine": uname.machine,
        "os": platform.platform(aliased=True),
        "os_release": uname.release,
        "os_type": uname.system,
        "processor": uname.processor,
        "user": user_name(),
    }
