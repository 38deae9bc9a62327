"""The keep-alive answer and the interval policy: which beat and sampling intervals apply now.

Comet's keep-alive (``GET write/experiment/set-status``, seed row 25) answers
``isAliveBeatDurationMillis``, ``cpuMonitorIntervalMillis`` and
``gpuMonitorIntervalMillis`` (camelCase); the live heartbeat
(``status-report/update``) answers the same in snake_case. The Comet SDK
parses the sampling intervals and ignores them (wire §3.2); the agent
applies them. The clamps and the precedence are our own policy, wire §3.2
REC, deliberately safer than the SDK (which beats in a tight loop on a 0):

- a value that is not a positive number (missing, zero, negative, a string,
  a boolean, NaN, an integer past the float range) is ignored and the
  previous interval holds;
- a valid value is clamped to ``[min_interval_s, max_interval_s]``;
- a sampling interval the user set explicitly (flag, env, config file) wins
  over the server's; the server's wins over the built-in 30 s default;
- while the server is unreachable the last good intervals hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from agent.config import Settings

_FIELDS = {
    "beat": ("isAliveBeatDurationMillis", "is_alive_beat_duration_millis"),
    "cpu": ("cpuMonitorIntervalMillis", "cpu_monitor_interval_millis"),
    "gpu": ("gpuMonitorIntervalMillis", "gpu_monitor_interval_millis"),
}
INITIAL_BEAT_S = 10.0  # the SDK's INITIAL_HEARTBEAT_INTERVAL, until the first answer


@dataclass(frozen=True)
class Intervals:
    """The intervals in force, in seconds, and where each came from."""

    beat_s: float
    cpu_s: float
    gpu_s: float
    beat_source: str = "default"  # default | server | server-clamped
    cpu_source: str = "default"  # default | config | server | server-clamped
    gpu_source: str = "default"

    def as_dict(self) -> dict[str, object]:
        """Plain data for status and logs."""
        return {
            "beat_s": self.beat_s,
            "cpu_s": self.cpu_s,
            "gpu_s": self.gpu_s,
            "beat_source": self.beat_source,
            "cpu_source": self.cpu_source,
            "gpu_source": self.gpu_source,
        }


@dataclass(frozen=True)
class Change:
    """What one answer did, for the log: ignored fields and clamped values."""

    ignored: tuple[tuple[str, object], ...] = ()
    clamped: tuple[tuple[str, float, float], ...] = ()  # field, asked s, applied s


class IntervalPolicy:
    """Fold keep-alive answers into the intervals in force."""

    def __init__(self, settings: Settings) -> None:
        self._lo = settings.min_interval_s
        self._hi = settings.max_interval_s
        self._follow = settings.follow_server
        self._user_cpu = "cpu_interval_s" in settings.explicit
        self._user_gpu = "gpu_interval_s" in settings.explicit
        self.current = Intervals(
            beat_s=INITIAL_BEAT_S,
            cpu_s=settings.cpu_interval_s,
            gpu_s=settings.gpu_interval_s,
            cpu_source="config" if self._user_cpu else "default",
            gpu_source="config" if self._user_gpu else "default",
        )

    def apply(self, answer: object) -> Change:
        """Update ``current`` from one decoded keep-alive answer; return what was off in it."""
        data: Mapping[str, object] = answer if isinstance(answer, Mapping) else {}
        ignored: list[tuple[str, object]] = []
        clamped: list[tuple[str, float, float]] = []
        updates: dict[str, object] = {}
        for kind, names in _FIELDS.items():
            if kind == "cpu" and (self._user_cpu or not self._follow):
                continue
            if kind == "gpu" and (self._user_gpu or not self._follow):
                continue
            name, raw = _pick(data, names)
            if name is None:
                continue  # missing: the previous interval holds
            seconds = _seconds(raw)
            if seconds is None:
                ignored.append((name, raw))
                continue
            applied = min(max(seconds, self._lo), self._hi)
            if applied != seconds:
                clamped.append((name, seconds, applied))
            updates[f"{kind}_s"] = applied
            updates[f"{kind}_source"] = "server" if applied == seconds else "server-clamped"
        if not isinstance(answer, Mapping):
            ignored.append(("answer", answer))
        self.current = replace(self.current, **updates)  # type: ignore[arg-type]
        return Change(tuple(ignored), tuple(clamped))

    def restore(self, saved: Mapping[str, object]) -> bool:
        """Resume with intervals the server set before a restart; return whether any applied.

        Only values the server set, and only where it may still set them (the user's own
        interval wins); each is checked and clamped again as if it had just been answered.
        """
        updates: dict[str, object] = {}
        for kind in _FIELDS:
            if kind in ("cpu", "gpu") and (
                not self._follow or (self._user_cpu if kind == "cpu" else self._user_gpu)
            ):
                continue
            source, value = saved.get(f"{kind}_source"), saved.get(f"{kind}_s")
            if source not in ("server", "server-clamped"):
                continue
            seconds = _seconds(value * 1000 if isinstance(value, int | float) else value)
            if seconds is None or isinstance(value, bool):
                continue
            updates[f"{kind}_s"] = min(max(seconds, self._lo), self._hi)
            updates[f"{kind}_source"] = source
        if not updates:
            return False
        self.current = replace(self.current, **updates)  # type: ignore[arg-type]
        return True


def _pick(data: Mapping[str, object], names: tuple[str, str]) -> tuple[str | None, object]:
    for name in names:
        if name in data:
            return name, data[name]
    return None, None


def _seconds(raw: object) -> float | None:
    """Milliseconds as sent → seconds, or None when the value is not a positive finite number."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        seconds = raw / 1000.0
    except OverflowError:  # JSON integers have no size limit; 10**400 ms is garbage
        return None
    if not math.isfinite(seconds) or raw <= 0:
        return None
    return seconds
