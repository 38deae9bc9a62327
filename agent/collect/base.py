"""What every collector shares: reading kernel files, the Sample it returns, the Sampler shape.

A sampler's ``collect()`` returns a ``Sample``: the SDK's ``sys.*`` metric
names with their values, the readings behind the typed endpoints
(``agent.collect.readings``: plain values; the wire bodies are built in
``agent.lifecycle.samples``), health events, and the fields it found unsupported.
All of it is stamped with one timestamp, taken when the reading was made. A
sampler never logs and never touches the network; it returns data or raises
an ``agent.errors.CollectorError``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.collect.readings import Reading
from agent.errors import CollectorError, NoData

Clock = Callable[[], int]  # integer ms since the epoch
Number = int | float
_READ_LIMIT = 1 << 20
_CHUNK = 1 << 16


def read_small(path: Path, limit: int = _READ_LIMIT) -> str:
    """Return the text of a small kernel file (/proc, /sys, cgroup).

    A missing file is ``NoData`` (an expected absence); any other OSError is a
    ``CollectorError`` naming the path.
    """
    try:
        # Plain os.read in 64 KiB steps: a buffered read(limit) allocated `limit` bytes on
        # every call, and made each read of a 100-byte cgroup file cost 4x the kernel's work.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks: list[bytes] = []
            size = 0
            while size < limit and (chunk := os.read(fd, min(_CHUNK, limit - size))):
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
    except FileNotFoundError:
        raise NoData(f"{path} does not exist") from None
    except NotADirectoryError:
        raise NoData(f"{path} does not exist") from None
    except OSError as exc:
        raise CollectorError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the path: a mount point read from an odd mountinfo
        raise CollectorError(f"cannot read {str(path)!r}: the path holds a NUL byte") from None
    return data.decode("utf-8", errors="replace")


# Kernel files read every sample, kept open and re-read from offset 0: procfs, sysfs and
# cgroupfs files produce their text at each read, and an open + close cost as much again as
# the read. Only paths under the real /proc and /sys (fixture trees are plain files, which an
# atomic rewrite would leave the kept descriptor behind on), and a bounded number of them.
_KEPT: dict[str, int] = {}
_KEPT_MAX = 64
_KEPT_LOCK = threading.Lock()


def read_kept(path: Path, limit: int = _READ_LIMIT) -> str:
    """``read_small`` for a kernel file read every sample: the descriptor stays open.

    A file that goes away under an open descriptor (a removed cgroup: ENODEV; a dead
    process: ESRCH) is closed and read afresh, so its absence is reported as
    ``read_small`` reports it.
    """
    name = str(path)
    if not name.startswith(("/proc/", "/sys/")):
        return read_small(path, limit)
    fd = _KEPT.get(name)
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, ValueError):
            return read_small(path, limit)  # names the failure
        with _KEPT_LOCK:
            if name in _KEPT or len(_KEPT) >= _KEPT_MAX:
                os.close(fd)
                return read_small(path, limit)
            _KEPT[name] = fd
    try:
        chunks: list[bytes] = []
        size = 0
        while size < limit and (chunk := os.pread(fd, min(_CHUNK, limit - size), size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        with _KEPT_LOCK:
            if _KEPT.get(name) == fd:
                del _KEPT[name]
                os.close(fd)
        return read_small(path, limit)
    return b"".join(chunks).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Roots:
    """Where the kernel's and the OS's files are; tests point these at fixture trees."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    root: Path = Path("/")  # for /etc/os-release, /var/lib/dpkg/status, /.dockerenv

    @property
    def cgroup(self) -> Path:
        """The cgroup file system's mount point."""
        return self.sys / "fs" / "cgroup"

    @classmethod
    def under(cls, base: Path) -> Roots:
        """Roots for a fixture tree holding proc/, sys/ and the rest below `base`."""
        return cls(proc=base / "proc", sys=base / "sys", root=base)

    @classmethod
    def host(cls, host_root: Path | None) -> Roots:
        """The roots to sample: this machine's, or the host's / mounted at `host_root`.

        With a host root, psutil reads the host's /proc too (its PROCFS_PATH),
        as node_exporter does with --path.procfs.
        """
        if host_root is None:
            return cls()
        import psutil

        psutil.PROCFS_PATH = str(host_root / "proc")
        return cls.under(host_root)


@dataclass(frozen=True)
class HealthEvent:
    """Something that happened to the machine, for the experiment's timeline (GPU XID, OOM kill)."""

    kind: str  # stable name: gpu.xid, gpu.ecc, gpu.throttle_start, gpu.throttle_end, oom_kill
    message: str  # one line for a human, e.g. "GPU 0: XID 79 (fell off the bus)"
    timestamp_ms: int
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One sampler's readings at one instant."""

    timestamp_ms: int
    metrics: Mapping[str, Number] = field(default_factory=dict)  # "sys.cpu.percent.avg": 12.5
    readings: tuple[Reading, ...] = ()  # what the typed endpoints carry
    events: Sequence[HealthEvent] = ()
    unsupported: frozenset[str] = frozenset()  # fields left out: reported once, never sent as 0


class Sampler(Protocol):
    """A collector that runs on a schedule."""

    name: str

    def collect(self) -> Sample:
        """Read now and return the sample, or raise CollectorError."""
        ...

    def close(self) -> None:
        """Release what the sampler holds (NVML, file handles)."""
        ...
