"""Replay: turn an offline archive back into the messages the agent would have sent online.

The stream interleaves messages.json and comet_agent.jsonl as they were
written (an agent line goes right after the messages.json line its ``after``
names) and skips the messages.json lines an agent line ``replaces``. Metric
lines become metric batch items with their own timestamps, standard_output
lines Log Output lines with offsets re-assigned in file order from 0, file
uploads multipart messages with the file from the archive. Consecutive
metric (or output) lines are grouped into one message of at most
``REPLAY_BATCH`` items.

Each message comes with the stream position it ends at (how many archive
items it and everything before it consumed). The stream depends on the
archive alone, so an interrupted upload resumes exactly after the last
position it enqueued. Every message is a ``Kind.FACT``: what an archive
holds was already kept through the run, and the outbox's size cap must not
drop it now.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.api import bodies
from agent.archive import AgentLine, Archive, Line, Problem
from agent.archive.convert import from_line
from agent.message import Kind, Message

# Fixed, not a setting: the grouping must be the same on every run of an upload to resume it.
REPLAY_BATCH = 1000


@dataclass(frozen=True)
class Step:
    """One message to send, and the stream position right after it."""

    end: int
    message: Message


@dataclass
class _Batch:
    endpoint: str = ""
    context: object = None
    items: list[dict[str, object]] = field(default_factory=list)
    end: int = 0
    created_ms: int = 0


class Replay:
    """Iterate the messages of one archive; ``problems`` names what could not be replayed."""

    def __init__(self, archive: Archive, experiment_key: str) -> None:
        self._archive = archive
        self._key = experiment_key
        self.problems: list[Problem] = []
        start = archive.experiment.get("start_time")
        self._start_ms = start if isinstance(start, int) else 0

    def __iter__(self) -> Iterator[Step]:
        agent = self._archive.agent_lines()
        pending: AgentLine | None = next(agent, None)
        skip: set[int] = set()
        batch = _Batch()
        position = 0
        offset = 0
        for line in self._archive.lines():
            while pending is not None and pending.after < line.message_id:
                position += 1
                yield from self._flush(batch)
                yield from self._agent_step(pending, position, skip)
                pending = next(agent, None)
            position += 1
            if line.message_id in skip:
                continue
            if line.type in ("metric_msg", "standard_output"):
                item, endpoint, context = self._item(line, offset)
                offset += line.type == "standard_output"
                if (batch.endpoint, batch.context) != (endpoint, context) or len(
                    batch.items
                ) >= REPLAY_BATCH:
                    yield from self._flush(batch)
                    batch.endpoint, batch.context, batch.created_ms = endpoint, context, _ts(line)
                batch.items.append(item)
                batch.end = position
                continue
            yield from self._flush(batch)
            message = self._line_message(line)
            if message is not None:
                yield Step(position, message)
        yield from self._flush(batch)
        while pending is not None:
            position += 1
            yield from self._agent_step(pending, position, skip)
            pending = next(agent, None)
        self.problems.extend(self._archive.problems)

    def _item(self, line: Line, offset: int) -> tuple[dict[str, object], str, object]:
        p = line.payload
        if line.type == "metric_msg":
            metric = p["metric"]
            assert isinstance(metric, dict)  # noqa: S101 - the reader checked the line
            item = bodies.metric_item(
                str(metric["metricName"]),
                metric["metricValue"],
                _ts(line),
                context=_str(p.get("context")),
                step=metric.get("step"),
                epoch=metric.get("epoch"),
            )
            return item, "log-metric-batch", None
        item = bodies.output_line(
            str(p["output"]), stderr=bool(p["stderr"]), offset=offset, timestamp_ms=_ts(line)
        )
        return item, "log-output", p.get("context")

    def _flush(self, batch: _Batch) -> Iterator[Step]:
        if not batch.items:
            return
        if batch.endpoint == "log-metric-batch":
            body = bodies.metric_batch(batch.items)
        else:
            body = bodies.output(batch.items, _str(batch.context))
        yield Step(batch.end, Message(batch.endpoint, self._key, body, batch.created_ms, Kind.FACT))
        batch.items = []

    def _line_message(self, line: Line) -> Message | None:
        if line.type == "file_upload":
            return self._upload(line)
        found = from_line(line.type, line.payload)
        if found is None:
            self.problems.append(Problem("messages.json", line.number, f"{line.type}: not sent"))
            return None
        endpoint, body = found
        return Message(endpoint, self._key, body, _ts(line, self._start_ms), Kind.FACT)

    def _upload(self, line: Line) -> Message | None:
        p = line.payload
        name = str(p["file_path"])
        data = self._archive.read_file(name)
        if data is None:
            why = f"file_upload names {name!r}, which is not in the archive: not sent"
            self.problems.append(Problem("messages.json", line.number, why))
            return None
        if p["upload_type"] == "git-patch":
            return Message("upload-git-patch", self._key, {}, _ts(line), Kind.FACT, data)
        params = p.get("additional_params")
        extra = params if isinstance(params, dict) else {}
        body: dict[str, object] = {"fileName": str(extra.get("fileName") or name)}
        body["type"] = str(p["upload_type"])
        if isinstance(extra.get("step"), int):
            body["step"] = extra["step"]
        if isinstance(extra.get("context"), str):
            body["context"] = extra["context"]
        return Message("upload-asset", self._key, body, _ts(line), Kind.FACT, data)

    def _agent_step(self, entry: AgentLine, position: int, skip: set[int]) -> Iterator[Step]:
        skip.update(entry.replaces)
        data = None
        if entry.attachment is not None:
            data = self._archive.read_file(entry.attachment)
            if data is None:
                why = f"{entry.endpoint}: attachment {entry.attachment!r} is missing: not sent"
                self.problems.append(Problem("comet_agent.jsonl", entry.number, why))
                return
        created = entry.created_ms or self._start_ms
        yield Step(
            position, Message(entry.endpoint, self._key, entry.body, created, Kind.FACT, data)
        )


def _ts(line: Line, default: int = 0) -> int:
    stamp = line.payload.get("local_timestamp")
    return stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else default


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
