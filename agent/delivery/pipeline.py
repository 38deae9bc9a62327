"""Where the agent's messages go: the outbox and its sender, or straight into an offline archive.

Online, every message is written to the SQLite outbox before anything is sent,
and one sender thread drains it. Offline, the archive itself is the durable
store: each message is appended and flushed as it is queued, so a ``kill -9``
leaves nothing only in an outbox that no offline run would ever send. Either
way a write that fails (a full disk) keeps the messages in memory, bounded,
and tries them again first with the next write; what is still held at exit is
reported, never dropped in silence.

``Delivery.build(outbox, key, sinks, offline=...)`` builds its sinks
(``sinks/build.py``): the REST sink and the local copy, or the offline archive;
``fall_back_offline`` moves the outbox into an archive when Comet never made
the experiment exist. Delivery owns them, and ``close_sinks`` closes them.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent import log
from agent.config import Settings
from agent.delivery.backoff import Backoff
from agent.delivery.outbox import Outbox
from agent.delivery.sender import Sender, url_suspect
from agent.delivery.sinks.base import Sink
from agent.delivery.sinks.build import SinkBuilder
from agent.errors import AgentError, ApiError, OutboxError
from agent.message import Kind, Message, steady_ms

if TYPE_CHECKING:
    from agent.delivery.sinks.offline import OfflineSink
    from agent.lifecycle.state import StateDir

logger = log.get_logger(__name__)
PENDING_MAX = 10_000  # messages held in memory while the outbox cannot be written
# ... and their bytes: 10,000 output messages of 500 lines would be a gigabyte, in the
# training job's cgroup. Counted as the stored JSON would be, plus a dict's worth a message.
PENDING_MAX_BYTES = 32 * 1024 * 1024
ARCHIVE_GROUP = 32  # messages per archive write offline (a sample group is about eight)
SENDER_GRACE_S = 0.5  # past the stop deadline, how long a request in flight may still take


def open_outbox(path: Path, settings: Settings) -> Outbox:
    """Open the outbox; a corrupt one is salvaged, moved aside (never deleted), started anew."""
    # A daemon that refused to start would lose every sample from now on instead.
    return Outbox(path, max_bytes=settings.outbox_max_bytes, clock=steady_ms, recover=True)


class Delivery:
    """Queue messages durably and get them to the sink."""

    def __init__(
        self,
        outbox: Outbox,
        sink: Sink,
        settings: Settings,
        *,
        archive: OfflineSink | None = None,
        copy: OfflineSink | None = None,
        limiter: log.RateLimiter | None = None,
        sinks: SinkBuilder | None = None,
    ) -> None:
        self.outbox = outbox
        self.sink = sink
        self.archive = archive  # offline: the archive is the sink, and the durable store
        self.copy = copy
        self.fallback: OfflineSink | None = None  # what the outbox went into (fall_back_offline)
        self._sinks = sinks if sinks is not None else SinkBuilder(settings)
        self.copy_failed = 0  # messages the local copy could not take (they were still sent)
        self._limiter = limiter or log.RateLimiter()
        self._pending: deque[Message] = deque()
        self._pending_sizes: deque[int] = deque()  # the bytes of each held message, in order
        self._lock = threading.Lock()
        self.sender: Sender | None = None
        if archive is None:
            if (fix := url_suspect(settings.url_override)) is not None:
                # Said at the start: else only the 404s of every request, later, would tell.
                logger.warning("config.url_without_clientlib", fix=fix)
            # The outbox's retry times and the sender's waits on one clock that a wall-clock
            # step does not move (samples keep their wall-clock stamps).
            self.sender = Sender(
                outbox,
                sink,
                backoff=Backoff.from_settings(settings),
                batch_items=settings.batch_items,
                clock=steady_ms,
                url=settings.url_override,
                held=self,
                linger_s=settings.linger_s,
            )

    @classmethod
    def build(
        cls,
        outbox: Outbox,
        key: str,
        sinks: SinkBuilder,
        *,
        offline: bool,
        limiter: log.RateLimiter | None = None,
    ) -> Delivery:
        """Deliver `key`'s messages into its offline archive (AgentError when none opens),
        or to Comet through the outbox (and to the local copy, when asked for)."""
        if offline:
            archive = sinks.offline(key)
            return cls(
                outbox, archive, sinks.settings, archive=archive, limiter=limiter, sinks=sinks
            )
        copy = sinks.local_copy(key)
        return cls(outbox, sinks.rest(), sinks.settings, copy=copy, limiter=limiter, sinks=sinks)

    @property
    def offline(self) -> bool:
        """Whether the archive is the sink (no sender, no outbox drain)."""
        return self.archive is not None

    @property
    def kept(self) -> OfflineSink | None:
        """The offline archive this run ends in: the sink offline, or the fallback's."""
        return self.archive or self.fallback

    @property
    def local_archive(self) -> OfflineSink | None:
        """The archive on this host that holds the run: offline's, the fallback's, the copy."""
        return self.archive or self.fallback or self.copy

    def start(self) -> None:
        """Start draining (online)."""
        if self.sender is not None:
            self.sender.start()

    def adopt(self, state: StateDir, settings: Settings) -> None:
        """Move what ended runs could not deliver into this outbox, in order."""
        for path in state.orphans():
            try:
                # A damaged one gives what still reads: its directory is removed after this.
                orphan = Outbox(path, max_bytes=settings.outbox_max_bytes, recover=True)
            except OutboxError as exc:
                logger.error("outbox.orphan_unreadable", path=str(path), error=str(exc))
                continue
            moved = 0
            while batch := orphan.lease(500):
                self.outbox.put_many([row.message for row in batch])
                orphan.ack([row.id for row in batch])
                moved += len(batch)
            # Its dead letters too: `status` shows them and `retry` sends them from here.
            dead = orphan.dead_letters(limit=orphan.stats().dead)
            self.outbox.put_dead(dead)
            orphan.close()
            if moved or dead:
                logger.info("outbox.adopted", path=str(path), count=moved, dead=len(dead))

    def fall_back_offline(self, key: str, reason: str) -> int | None:
        """Move what the outbox holds into an offline archive of `key`; return how many
        messages went, or None when no archive opens (the outbox keeps them, said).

        For a run whose experiment Comet never made exist: ``comet-agent upload`` creates
        or joins it later (same key). A message of another experiment (adopted from an
        ended run) stays in the outbox as a dead letter."""
        try:
            archive = self._sinks.archive(self._sinks.settings.offline_directory, key, given=True)
        except (OSError, AgentError) as exc:
            logger.warning(
                "outbox.kept",
                reason=reason,
                error=getattr(exc, "strerror", None) or str(exc),
                hint="the offline directory is not writable; the outbox keeps the run",
            )
            return None
        moved = 0
        while batch := self.outbox.lease(500):
            done, foreign = [], []
            for row in batch:
                m = row.message
                try:
                    archive.send(m.endpoint, m.experiment_key, m.body, m.attachment)
                    done.append(row.id)
                except ApiError as exc:  # an adopted run's message: kept as a dead letter
                    foreign.append(row.id)
                    reason_row = str(exc)
            self.outbox.ack(done)
            if foreign:
                self.outbox.reject(foreign, reason_row)
            moved += len(done)
        self.fallback = archive
        return moved

    def checkpoint(self) -> None:
        """Record the local archive's stop time and fsync it (offline, or the local copy)."""
        archive = self.archive or self.copy
        if archive is not None:
            archive.checkpoint()

    def close_sinks(self) -> None:
        """Close what delivery built: the sink, an offline archive (zipped here), the copy.

        An archive that cannot be zipped (a full disk) stays a partial directory that
        ``upload`` finishes, said in one warning: the run's own exit status must not turn
        into a failure for it. The outbox is its opener's to close."""
        kept = self.kept
        for closing in (self.sink, kept if kept is not self.sink else None):
            if closing is not None:
                try:
                    closing.close()
                except AgentError as exc:
                    logger.warning("offline.unfinished", error=str(exc))
        if self.copy is not None:
            try:
                self.copy.close()
            except ApiError as exc:
                logger.warning("local_copy.unfinished", error=str(exc))

    def put(self, messages: Sequence[Message]) -> bool:
        """Write `messages` (after any held ones); False when they are held in memory."""
        if not messages:
            return True
        with self._lock:
            batch = [*self._pending, *messages]
            try:
                if self.archive is not None:
                    self._append(batch)
                else:
                    self.outbox.put_many(batch)
            except (OutboxError, ApiError) as exc:
                # Disk full or the file gone: hold on in memory, retry with the next batch.
                self._pending = deque(batch)
                self._pending_sizes.extend(_held_size(m) for m in messages)
                held_bytes, dropped = sum(self._pending_sizes), 0
                while self._pending and (
                    len(self._pending) > PENDING_MAX or held_bytes > PENDING_MAX_BYTES
                ):
                    self._pending.popleft()
                    held_bytes -= self._pending_sizes.popleft()
                    dropped += 1
                repeats = self._limiter.check("outbox.put_failed")
                if repeats is not None or dropped:
                    logger.error(
                        "outbox.put_failed",
                        error=str(exc),
                        held=len(self._pending),
                        dropped=dropped,
                    )
                if self.sender is not None:
                    self.sender.wake()  # Comet may take from memory what the disk would not
                return False
            if self._pending:
                logger.info("outbox.put_recovered", count=len(self._pending))
            self._pending.clear()
            self._pending_sizes.clear()
            if self.copy is not None:
                self._copy(batch)
        if self.sender is not None:
            self.sender.wake()
        return True

    def take_held(self, limit: int) -> list[Message]:
        """Write the held messages if the disk takes them now (then return none); else remove
        and return up to `limit` of them, oldest first, for the sender to send from memory."""
        with self._lock:
            if not self._pending:
                return []
            if self.archive is None:
                try:
                    self.outbox.put_many(list(self._pending))  # the durable path first
                except OutboxError:
                    pass  # still refused: the sender takes them from memory below
                else:
                    logger.info("outbox.put_recovered", count=len(self._pending))
                    self._pending.clear()
                    return []
            return [self._pending.popleft() for _ in range(min(limit, len(self._pending)))]

    def return_held(self, messages: list[Message]) -> None:
        """Put back, in front and in order, held messages the sender could not send."""
        with self._lock:
            self._pending.extendleft(reversed(messages))
            dropped = 0
            while len(self._pending) > PENDING_MAX:
                self._pending.pop()  # the newest: what was taken back was older
                dropped += 1
        if dropped:
            logger.error("outbox.put_failed", error="memory cap reached", held=PENDING_MAX,
                         dropped=dropped)  # fmt: skip

    def _append(self, batch: list[Message]) -> None:
        """Append `batch` to the archive; on a disk error the unwritten rest stays in `batch`
        (the caller keeps it)."""
        assert self.archive is not None  # noqa: S101 - offline only
        while batch:
            n = _group_size(batch)
            self.archive.send_many(batch[:n])
            del batch[:n]

    def _copy(self, batch: Sequence[Message]) -> None:
        """Append what was just queued to the local copy; the outbox stays the durable path."""
        assert self.copy is not None  # noqa: S101 - local copy only
        # Messages adopted from an ended run are not this experiment's copy.
        mine = [m for m in batch if m.experiment_key == self.copy.experiment_key]
        while mine:
            n = _group_size(mine)
            try:
                self.copy.send_many(mine[:n])
            except ApiError as exc:
                self.copy_failed += n
                if self._limiter.check("local_copy.write_failed") is not None:
                    logger.warning(
                        "local_copy.write_failed",
                        error=str(exc),
                        failed=self.copy_failed,
                        hint="the messages are still sent; only the local copy misses them",
                    )
            del mine[:n]

    @property
    def held(self) -> int:
        """Messages held in memory because the last write failed."""
        return len(self._pending)

    @property
    def throttled_ever(self) -> bool:
        """Whether Comet ever throttled this run (then mark-not-throttled is due at the end)."""
        return self.sender is not None and self.sender.status().throttled_ever

    def flush(self, timeout_s: float) -> bool:
        """Send what is queued for at most `timeout_s`; stop the sender; True when drained."""
        if self.sender is None:
            return True
        started = steady_ms()
        drained = self.sender.flush(timeout_s, fresh=True)
        left_s = timeout_s - (steady_ms() - started) / 1000
        # A request still in flight (a slow server) gets a short grace, not its whole timeout:
        # its rows stay leased on disk and go out again at the next start.
        self.sender.stop(timeout_s=max(SENDER_GRACE_S, left_s))
        if not drained:
            stats = self.outbox.stats()
            logger.warning(
                "outbox.kept",
                count=stats.ready + stats.leased,
                hint="sent at the next start of comet-agent on this state directory",
            )
        return drained

    def report_unwritten(self) -> None:
        """Say what dies with the process: messages held in memory that never reached the disk."""
        with self._lock:
            held = list(self._pending)
        if held:
            logger.error(
                "outbox.unwritten",
                count=len(held),
                by_kind=dict(Counter(msg.kind.name.lower() for msg in held)),
                first_ms=min(msg.created_ms for msg in held),
                last_ms=max(msg.created_ms for msg in held),
                hint="the outbox could not be written (disk full?); these are lost",
            )


def _group_size(batch: Sequence[Message]) -> int:
    """How many of `batch`'s first messages go into the archive in one write: a sample's
    messages together (up to ARCHIVE_GROUP), an output message alone, as it may hold
    thousands of lines whose archive lines would all be in memory at once."""
    if batch[0].kind is Kind.OUTPUT:
        return 1
    n = 1
    while n < min(len(batch), ARCHIVE_GROUP) and batch[n].kind is not Kind.OUTPUT:
        n += 1
    return n


def _held_size(message: Message) -> int:
    """What a message held in memory costs, about: its JSON, its attachment, the objects."""
    return len(message.encoded_body()) + len(message.attachment or b"") + 1024
