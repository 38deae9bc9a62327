"""OfflineSink: where messages end when the agent has no API key or runs --offline.

The sender drains the outbox into this sink exactly as it would into the REST
sink; each message becomes the archive lines wire §6.3 defines (see
``agent.archive.convert``), written to ``<directory>/<key>.partial/`` and
flushed per message. ``close()`` zips it into ``<directory>/<key>.zip``
(wire §6.1 naming), which ``comet-agent upload`` or the SDK's ``comet upload``
sends later. A crash leaves the partial directory; the next sink opened on
the same directory (the next agent start) or ``comet-agent upload`` zips it.

Calls that only make sense against a server (handshake, keep-alive, health
ping) are answered locally and not archived: the uploader makes its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agent import log
from agent.archive.convert import PATCH_FILE, to_lines
from agent.archive.finalize import Finalized, recover_partials
from agent.archive.format import PARTIAL_SUFFIX, RESUME_STRATEGIES, experiment_record
from agent.archive.writer import PartialArchive
from agent.errors import ClientError, TransportError, UsageError
from agent.message import Message, now_ms

# Answered here, never archived: their answers only mean something from a live server.
SESSION_ENDPOINTS = frozenset(
    {
        "add-run",
        "get-run",
        "create-experiment",
        "status-report",
        "keep-alive",
        "offline-metadata",
        "backend-version",
        "health-ping",
        "experiment-metadata",
    }
)
_SAVED: Mapping[str, object] = {"msg": "Saved"}


class OfflineSink:
    """Write what the agent would send into an offline archive (the Sink protocol)."""

    def __init__(
        self,
        directory: Path,
        experiment_key: str,
        *,
        workspace: str | None,
        project: str | None,
        start_ms: int,
        resume_strategy: str = "create",
        user_provided_key: bool = False,
        tags: Sequence[str] = (),
        checkpoint_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
        recover: bool = True,
    ) -> None:
        if resume_strategy not in RESUME_STRATEGIES:
            raise UsageError(
                f"resume strategy {resume_strategy!r} is not one of {', '.join(RESUME_STRATEGIES)}"
            )
        self._key = experiment_key
        self._clock = clock
        self._checkpoint_ms = int(checkpoint_s * 1000)
        self.partial_path = directory / f"{experiment_key}{PARTIAL_SUFFIX}"
        # Runs a crash left behind are zipped now, so the next `upload` finds them.
        self.recovered: list[Finalized] = (
            recover_partials(directory, skip=[self.partial_path]) if recover else []
        )
        self._archive = PartialArchive(
            self.partial_path,
            experiment_record(
                offline_id=experiment_key,
                workspace=workspace,
                project=project,
                start_ms=start_ms,
                stop_ms=max(start_ms, self._clock()),
                tags=tags,
                resume_strategy=resume_strategy,
                user_provided_key=user_provided_key,
            ),
        )
        self._lock = threading.Lock()
        self._last_checkpoint = self._clock()
        self._end_ms: int | None = None
        self._attachments = 0  # numbers the attachment files, unique within this process
        self.finalized: Finalized | None = None
        self._log = log.get_logger()

    @property
    def experiment_key(self) -> str:
        """The experiment this archive holds."""
        return self._key

    @property
    def path(self) -> Path:
        """The archive: the zip once closed, the partial directory before."""
        return self.finalized.path if self.finalized else self.partial_path

    def send(
        self,
        endpoint: str,
        experiment_key: str,
        body: Mapping[str, object],
        attachment: bytes | None,
    ) -> object:
        """Append one message to the archive; raise TransportError when the disk refuses."""
        if endpoint in SESSION_ENDPOINTS:
            return None
        self.send_many([Message(endpoint, experiment_key, body, 0, attachment=attachment)])
        return _SAVED

    def send_many(self, messages: Sequence[Message]) -> None:
        """Append messages to the archive, all or none, one write per file.

        Raises ClientError (a message of another experiment: nothing is written) or
        TransportError (the disk refused: nothing is kept of this call).
        """
        todo = [m for m in messages if m.endpoint not in SESSION_ENDPOINTS]
        for msg in todo:
            if msg.experiment_key != self._key:
                raise ClientError(
                    f"{msg.endpoint}: message for experiment {msg.experiment_key}, but this "
                    f"offline archive holds {self._key}; it is kept in the outbox's dead letters"
                )
        if not todo:
            return
        with self._lock:
            if self.finalized is not None:
                raise TransportError(
                    f"{todo[0].endpoint}: the offline archive {self.path} is closed"
                )
            now = self._clock()
            self._write(todo, now)
            for msg in todo:
                self._note_times(msg.endpoint, msg.body)
            if now - self._last_checkpoint >= self._checkpoint_ms:
                self._checkpoint(now)

    def _write(self, messages: Sequence[Message], now: int) -> None:
        # One append for the whole batch: at 1 s sampling the per-message writes and seeks
        # were a visible share of an offline agent's CPU.
        first = self._archive.last_id + 1
        lines: list[dict[str, object]] = []
        agent: list[dict[str, object]] = []
        files: list[tuple[str, bytes]] = []
        for msg in messages:
            endpoint, body, attachment = msg.endpoint, msg.body, msg.attachment
            converted = to_lines(endpoint, body, attachment, now)
            if converted.dropped:
                self._log.warning(
                    "offline.invalid_items", endpoint=endpoint, count=converted.dropped
                )
            start = first + len(lines)
            for offset, (kind, payload) in enumerate(converted.lines):
                payload = {**payload, "message_id": start + offset}
                if kind == "file_upload" and converted.patch is not None:
                    payload["file_path"] = PATCH_FILE.format(id=start + offset)
                lines.append({"type": kind, "payload": payload})
            if converted.patch is not None:
                files.append((PATCH_FILE.format(id=start), converted.patch))
            if not converted.complete:
                entry: dict[str, object] = {
                    "after": start - 1,
                    "endpoint": endpoint,
                    "body": dict(body),
                    "created_ms": now,
                }
                end = first + len(lines)
                if end > start:
                    entry["replaces"] = list(range(start, end))
                if attachment is not None and converted.patch is None:
                    self._attachments += 1  # two in one batch share `start` and `now`
                    entry["attachment"] = name = f"attachment-{start}-{now}-{self._attachments}.bin"
                    files.append((name, attachment))
                agent.append(entry)
        try:
            for name, data in files:
                self._archive.add_file(name, data)
            self._archive.append(lines, agent)
        except OSError as exc:
            raise TransportError(
                f"{messages[0].endpoint}: cannot write the offline archive in "
                f"{self.partial_path.parent} ({exc.strerror or exc}); free disk space or set "
                "COMET_OFFLINE_DIRECTORY"
            ) from None

    def _note_times(self, endpoint: str, body: Mapping[str, object]) -> None:
        """Let the run's own start/end time and crash report reach experiment.json."""
        if endpoint == "set-start-end-time":
            start, end = body.get("startTimeMillis"), body.get("endTimeMillis")
            if isinstance(start, int) and not isinstance(start, bool):
                self._archive.experiment["start_time"] = start
            if isinstance(end, int) and not isinstance(end, bool):
                self._end_ms = end
        elif endpoint == "update-status" and body.get("hasCrashed") is True:
            error = body.get("error")
            self._archive.experiment["customer_error_reported"] = True
            self._archive.experiment["customer_error_message"] = (
                error if isinstance(error, str) else None
            )

    def _checkpoint(self, now: int) -> None:
        try:
            self._archive.checkpoint(
                stop_time=max(now, _int(self._archive.experiment, "start_time"))
            )
        except OSError as exc:
            self._log.warning("offline.checkpoint_failed", error=exc.strerror or str(exc))
        self._last_checkpoint = now

    def checkpoint(self) -> None:
        """Record the current stop time and fsync what was written (call it now and then)."""
        with self._lock:
            if self.finalized is None:
                self._checkpoint(self._clock())

    def close(self) -> None:
        """Zip the archive into its final place; ``self.path`` then names the zip."""
        with self._lock:
            if self.finalized is not None:
                return
            start = _int(self._archive.experiment, "start_time")
            stop = self._end_ms if self._end_ms is not None else self._clock()
            self._archive.experiment["stop_time"] = max(start, stop)
            try:
                self.finalized = self._archive.finalize()
            except OSError as exc:
                raise TransportError(
                    f"cannot zip the offline archive {self.partial_path} "
                    f"({exc.strerror or exc}); it stays there, and `comet-agent upload` "
                    "finishes it once there is room"
                ) from None
            self._log.info(
                "offline.archived", path=str(self.finalized.path), lines=self.finalized.lines
            )


def _int(record: Mapping[str, object], key: str) -> int:
    value = record.get(key)
    return value if isinstance(value, int) else 0
