"""How a run ends: the wrapped command's exit, and the FACT messages that close the experiment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.api import bodies
from agent.message import Kind, Message


@dataclass(frozen=True)
class ChildExit:
    """How a wrapped command ended (from ``agent.run``)."""

    exit_code: int
    signal: int | None
    wall_s: float
    oom_killed: bool | None
    error: str | None = None

    @property
    def crashed(self) -> bool:
        """Anything but a clean exit 0."""
        return self.exit_code != 0


def end_messages(
    experiment_key: str,
    *,
    child: ChildExit | None,
    leader: bool,
    owned: bool,
    started_ms: int,
    end_ms: int,
    throttled: bool,
) -> list[Message]:
    """The FACT messages that end a run: how the command ended, a crash, the end time, and
    mark-not-throttled after a throttled run (SPEC §3.10, §4.2)."""

    def msg(endpoint: str, body: Mapping[str, object]) -> Message:
        return Message(endpoint, experiment_key, body, end_ms, Kind.FACT)

    out: list[Message] = []
    if child is not None:
        facts = {
            "exit_code": child.exit_code,
            "signal": child.signal,
            "oom_killed": child.oom_killed,
            "wall_s": round(child.wall_s, 3),
        }
        for name, value in facts.items():
            if value is not None:
                out.append(msg("log-other", bodies.log_other(f"comet_agent.{name}", value, end_ms)))
        if child.crashed and leader:
            reason = child.error or (
                f"killed by signal {child.signal}"
                if child.signal
                else f"exit code {child.exit_code}"
            )
            if child.oom_killed:
                reason += " (out of memory)"
            out.append(
                msg("update-status", bodies.update_status(alive=False, error=reason, crashed=True))
            )
    if owned and leader:
        out.append(msg("set-start-end-time", bodies.start_end_time(started_ms, end_ms)))
    if throttled:
        out.append(msg("mark-not-throttled", {}))
    return out
