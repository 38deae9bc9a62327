"""The status snapshot: what ``status.json`` holds, written by the agent, read back typed.

The agent writes one every few seconds (``StateDir.write_status``); ``status``,
``top``, ``report`` and ``doctor`` read it back (``state.read_status``). Reading
is tolerant, because the file may come from an older or a newer agent or be
damaged: unknown keys are ignored, a missing or mistyped value reads as its
default (None where nothing can stand in), and only a file that is not a JSON
object at all reads as None. The parts mirror the producers' types, which are
imported for type checking only: ``status`` loads none of the delivery code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.delivery.outbox import OutboxStats
    from agent.delivery.sender import SenderStatus
    from agent.lifecycle.keepalive import Intervals
    from agent.lifecycle.multinode import Identity

INT_LIMIT = 1 << 63  # what SQLite and C hold: a larger integer in status.json is damage
PID_LIMIT = 1 << 22  # Linux's PID_MAX_LIMIT: a larger "pid" is damage, and os.kill would overflow


@dataclass(frozen=True)
class SnapshotIdentity:
    """The agent's place in the job (``multinode.Identity`` with its context)."""

    hostname: str | None = None
    rank: int | None = None
    local_rank: int | None = None
    node: str | None = None
    rank_source: str | None = None
    context: str | None = None

    @classmethod
    def of(cls, identity: Identity) -> SnapshotIdentity:
        """The snapshot's copy of `identity`."""
        return cls(
            identity.hostname,
            identity.rank,
            identity.local_rank,
            identity.node,
            identity.rank_source,
            identity.context,
        )

    @classmethod
    def from_json(cls, data: object) -> SnapshotIdentity | None:
        """Read the ``identity`` object; None when there is none."""
        if not isinstance(data, dict):
            return None
        return cls(
            _str(data.get("hostname")),
            _int(data.get("rank")),
            _int(data.get("local_rank")),
            _str(data.get("node")),
            _str(data.get("rank_source")),
            _str(data.get("context")),
        )


@dataclass(frozen=True)
class SnapshotIntervals:
    """The intervals in force, in seconds, and where each came from (None: not recorded)."""

    beat_s: float | None = None
    cpu_s: float | None = None
    gpu_s: float | None = None
    beat_source: str | None = None
    cpu_source: str | None = None
    gpu_source: str | None = None

    @classmethod
    def of(cls, intervals: Intervals) -> SnapshotIntervals:
        """The snapshot's copy of the keep-alive policy's `intervals`."""
        return cls(
            intervals.beat_s,
            intervals.cpu_s,
            intervals.gpu_s,
            intervals.beat_source,
            intervals.cpu_source,
            intervals.gpu_source,
        )

    @classmethod
    def from_json(cls, data: object) -> SnapshotIntervals:
        """Read the ``intervals`` object."""
        d = _map(data)
        return cls(
            _num(d.get("beat_s")),
            _num(d.get("cpu_s")),
            _num(d.get("gpu_s")),
            _str(d.get("beat_source")),
            _str(d.get("cpu_source")),
            _str(d.get("gpu_source")),
        )


@dataclass(frozen=True)
class Beat:
    """The last keep-alive: when, whether Comet answered, its answer or the error."""

    at_ms: int | None = None
    ok: bool = False
    error: str | None = None
    answer: object = None  # the server's JSON, as it came

    @classmethod
    def from_json(cls, data: object) -> Beat | None:
        """Read the ``last_beat`` object (the heartbeat keeps the same shape); {} is None."""
        if not isinstance(data, dict) or not data:
            return None
        return cls(
            _int(data.get("at_ms")),
            data.get("ok") is True,
            _str(data.get("error")),
            data.get("answer"),
        )

    def as_json(self) -> dict[str, object]:
        """The JSON object: ``answer`` after a success, ``error`` after a failure."""
        out: dict[str, object] = {"at_ms": self.at_ms, "ok": self.ok}
        if self.ok:
            out["answer"] = self.answer
        else:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class OutboxCounts:
    """The outbox's counts and sizes (``outbox.OutboxStats``)."""

    ready: int = 0
    leased: int = 0
    dead: int = 0
    bytes: int = 0
    oldest_created_ms: int | None = None
    dropped_total: int = 0
    dropped_by_kind: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, stats: OutboxStats) -> OutboxCounts:
        """The snapshot's copy of the outbox's `stats`."""
        return cls(
            stats.ready,
            stats.leased,
            stats.dead,
            stats.bytes,
            stats.oldest_created_ms,
            stats.dropped_total,
            dict(stats.dropped_by_kind),
        )

    @classmethod
    def from_json(cls, data: object) -> OutboxCounts | None:
        """Read the ``outbox`` object; None when there is none (a stopped agent's)."""
        if not isinstance(data, dict):
            return None
        return cls(
            _count(data.get("ready")),
            _count(data.get("leased")),
            _count(data.get("dead")),
            _count(data.get("bytes")),
            _int(data.get("oldest_created_ms")),
            _count(data.get("dropped_total")),
            _counts(data.get("dropped_by_kind")),
        )


@dataclass(frozen=True)
class SenderState:
    """What the sender has done and why it waits (``sender.SenderStatus``)."""

    last_success_ms: int | None = None
    last_error: str | None = None
    last_error_ms: int | None = None
    paused_auth: bool = False
    throttled: Mapping[str, int] = field(default_factory=dict)  # endpoint → until (ms)
    throttled_ever: bool = False
    sent_total: int = 0
    requests_total: int = 0
    paused_url: bool = False

    @classmethod
    def of(cls, status: SenderStatus) -> SenderState:
        """The snapshot's copy of the sender's `status`."""
        return cls(
            status.last_success_ms,
            status.last_error,
            status.last_error_ms,
            status.paused_auth,
            dict(status.throttled),
            status.throttled_ever,
            status.sent_total,
            status.requests_total,
            status.paused_url,
        )

    @classmethod
    def from_json(cls, data: object) -> SenderState | None:
        """Read the ``sender`` object; None when there is none (offline, or stopped)."""
        if not isinstance(data, dict):
            return None
        return cls(
            _int(data.get("last_success_ms")),
            _str(data.get("last_error")),
            _int(data.get("last_error_ms")),
            data.get("paused_auth") is True,
            _counts(data.get("throttled")),
            data.get("throttled_ever") is True,
            _count(data.get("sent_total")),
            _count(data.get("requests_total")),
            data.get("paused_url") is True,
        )


@dataclass(frozen=True)
class CollectorState:
    """One collector's failures, last error and last good sample (``Sampling.collectors()``)."""

    failures: int = 0
    last_error: str | None = None
    last_ok_ms: int | None = None

    @classmethod
    def from_json(cls, data: object) -> CollectorState:
        """Read one collector's object (the sampler keeps the same shape)."""
        d = _map(data)
        return cls(_count(d.get("failures")), _str(d.get("last_error")), _int(d.get("last_ok_ms")))

    def as_json(self) -> dict[str, object]:
        """The JSON object; a key the collector has not earned yet is left out, as before."""
        out: dict[str, object] = {"failures": self.failures}
        if self.last_error is not None:
            out["last_error"] = self.last_error
        if self.last_ok_ms is not None:
            out["last_ok_ms"] = self.last_ok_ms
        return out


@dataclass(frozen=True)
class StatusSnapshot:
    """What ``status.json`` holds: the agent, its experiment, intervals, backlog, collectors."""

    version: str | None = None
    pid: int | None = None
    running: bool = False
    started_ms: int | None = None
    updated_ms: int | None = None
    stopped_cleanly: bool = False  # written last by stop(); a killed agent never says so
    experiment_key: str | None = None
    link: str | None = None
    offline: bool = False
    owned: bool | None = None  # the agent created the experiment; None before it attached
    leader: bool = False
    identity: SnapshotIdentity | None = None
    intervals: SnapshotIntervals = field(default_factory=SnapshotIntervals)
    follow_server: bool = True
    last_beat: Beat | None = None
    outbox: OutboxCounts | None = None
    sender: SenderState | None = None
    pending_in_memory: int = 0
    collectors: Mapping[str, CollectorState] = field(default_factory=dict)
    gpu: str | None = None  # "on", or why GPU sampling is off
    archive: str | None = None
    archive_hint: str | None = None

    @classmethod
    def from_json(cls, data: object) -> StatusSnapshot | None:
        """Read a parsed ``status.json``; None unless it is a JSON object."""
        if not isinstance(data, dict):
            return None
        pid = _int(data.get("pid"))
        collectors = _map(data.get("collectors"))
        return cls(
            version=_str(data.get("version")),
            pid=pid if pid is not None and 0 < pid <= PID_LIMIT else None,
            running=data.get("running") is True,
            started_ms=_int(data.get("started_ms")),
            updated_ms=_int(data.get("updated_ms")),
            stopped_cleanly=data.get("stopped_cleanly") is True,
            experiment_key=_str(data.get("experiment_key")),
            link=_str(data.get("link")),
            offline=data.get("offline") is True,
            owned=_bool(data.get("owned")),
            leader=data.get("leader") is True,
            identity=SnapshotIdentity.from_json(data.get("identity")),
            intervals=SnapshotIntervals.from_json(data.get("intervals")),
            follow_server=data.get("follow_server") is not False,
            last_beat=Beat.from_json(data.get("last_beat")),
            outbox=OutboxCounts.from_json(data.get("outbox")),
            sender=SenderState.from_json(data.get("sender")),
            pending_in_memory=_count(data.get("pending_in_memory")),
            collectors={str(k): CollectorState.from_json(v) for k, v in collectors.items()},
            gpu=_str(data.get("gpu")),
            archive=_str(data.get("archive")),
            archive_hint=_str(data.get("archive_hint")),
        )

    def as_json(self) -> dict[str, object]:
        """The JSON object ``status.json`` holds: the keys and layout other tools read."""
        return {
            "version": self.version,
            "pid": self.pid,
            "running": self.running,
            "started_ms": self.started_ms,
            "updated_ms": self.updated_ms,
            "stopped_cleanly": self.stopped_cleanly,
            "experiment_key": self.experiment_key,
            "link": self.link,
            "offline": self.offline,
            "owned": self.owned,
            "leader": self.leader,
            "identity": asdict(self.identity) if self.identity is not None else None,
            "intervals": asdict(self.intervals),
            "follow_server": self.follow_server,
            "last_beat": self.last_beat.as_json() if self.last_beat is not None else {},
            "outbox": _plain(self.outbox),
            "sender": _plain(self.sender),
            "pending_in_memory": self.pending_in_memory,
            "collectors": {name: state.as_json() for name, state in self.collectors.items()},
            "gpu": self.gpu,
            "archive": self.archive,
            "archive_hint": self.archive_hint,
        }


def _map(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _int(value: object) -> int | None:
    """An integer (a finite float truncated, as another JSON writer may give one); not a bool."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        # Past what SQLite and C hold is damage, and would overflow float and time arithmetic.
        return value if -INT_LIMIT < value < INT_LIMIT else None
    if isinstance(value, float) and math.isfinite(value) and abs(value) < INT_LIMIT:
        return int(value)
    return None


def _count(value: object) -> int:
    return _int(value) or 0


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _counts(value: object) -> dict[str, int]:
    return {str(k): n for k, v in _map(value).items() if (n := _int(v)) is not None}


def _plain(part: OutboxCounts | SenderState | None) -> dict[str, object] | None:
    return None if part is None else asdict(part)
