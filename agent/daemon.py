"""The agent's lifecycle, and ``comet-agent start``.

``Agent.start()`` attaches (or creates, or goes offline), queues the static
facts, starts the sender and the jobs; ``wait()`` is the main thread's loop
(signals, the watched pid, the wall clock, the status snapshot); ``stop()``
takes a last sample, queues the end time, and flushes within the deadline.
Whatever is not delivered by then stays in the outbox for the next start.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from agent import __version__, log
from agent.attach import Attachment, attach, offline_attachment
from agent.backoff import Backoff
from agent.collect.base import HealthEvent, Roots, Sample, Sampler
from agent.config import Settings
from agent.errors import AgentError, ApiError, CollectorError, NoData, OutboxError
from agent.keepalive import IntervalPolicy
from agent.message import Kind, Message, now_ms, steady_ms
from agent.multinode import Identity, identify, is_leader
from agent.notify import sd_notify, watchdog_period_s
from agent.outbox import Outbox
from agent.outbox_db import CorruptOutbox
from agent.samples import Channels, to_messages
from agent.schedule import ClockWatch, Scheduler, guarded
from agent.sender import Sender
from agent.sinks.base import Sink
from agent.state import StateDir

if TYPE_CHECKING:
    # Imported where used: `run` starts the command before facts are gathered, and an
    # offline run never loads requests.
    from agent.api.client import CometClient
    from agent.sinks.offline import OfflineSink

logger = log.get_logger(__name__)
STATUS_EVERY_S = 5.0
SENDER_GRACE_S = 0.5  # past the stop deadline, how long a request in flight may still take
PENDING_MAX = 10_000  # messages held in memory while the outbox cannot be written


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


class Agent:
    """One monitored experiment: attach, sample, deliver, stop."""

    def __init__(
        self,
        settings: Settings,
        *,
        command: Sequence[str] | None = None,
        pid: int | None = None,
        python: str | None = None,
        roots: Roots | None = None,
        environ: dict[str, str] | None = None,
        fallback_offline: bool = False,
        private_state: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self._command = list(command) if command else list(sys.argv)
        self._pid = pid
        self._python = python
        self._roots = roots or Roots()
        self._environ = dict(os.environ if environ is None else environ)
        self._fallback_offline = fallback_offline
        self._private_state = private_state
        self._out = out or sys.stdout
        self.stop_event = threading.Event()
        self.identity: Identity = identify(self._environ)
        self.leader = is_leader(self.identity, settings.role)
        self.attachment: Attachment | None = None
        self.started_ms = now_ms()
        self._state: StateDir | None = None
        self._outbox: Outbox | None = None
        self._sender: Sender | None = None
        self._sink: Sink | None = None
        self._heartbeat_client: CometClient | None = None
        self._offline_sink: OfflineSink | None = None
        self._scheduler = Scheduler()
        self._policy = IntervalPolicy(settings)
        self._samplers: dict[str, list[Sampler]] = {}
        self._pending: deque[Message] = deque()
        self._pending_lock = threading.Lock()
        self._limiter = log.RateLimiter()
        self._unsupported_seen: set[str] = set()
        self._collector_state: dict[str, dict[str, object]] = {}
        # Sampling jobs change it while status() copies it for the snapshot (json.dump with
        # indent iterates in Python: a change mid-way raised and killed the agent in begin()).
        self._collector_lock = threading.Lock()
        self._last_beat: dict[str, object] = {}
        self._gpu_note: str | None = None
        self._offline_note: dict[str, str | None] = {}
        self.output: object = None  # an OutputStream under `run`
        self._archive_hint: str | None = None
        self._stopped = False
        self._began = threading.Event()
        self._stopping = threading.Event()  # set by stop(): a keep-alive in flight is abandoned
        self._worker = _Worker(self._stopping)

    # -- start -----------------------------------------------------------------------------

    @property
    def experiment_key(self) -> str:
        """The attached experiment's key."""
        if self.attachment is None:
            raise AgentError("the agent is not attached to an experiment yet")
        return self.attachment.experiment_key

    def start(self) -> Attachment:
        """Attach and begin sampling at once (``comet-agent start``); return the attachment."""
        attachment = self.open()
        self.begin()
        return attachment

    def open(self) -> Attachment:
        """Take the state directory, attach (or create, or go offline), start the sender."""
        s = self.settings
        self._state = StateDir.acquire(s.state_directory, private_fallback=self._private_state)
        self._outbox = self._open_outbox(self._state.outbox_path)
        self.attachment = self._attach()
        self._sink = self._make_sink(self.attachment)
        if self._offline_sink is None:
            self._adopt_orphans()
            # The outbox's retry times and the sender's waits on one clock that a wall-clock
            # step does not move (samples keep their wall-clock stamps).
            self._sender = Sender(
                self._outbox,
                self._sink,
                backoff=Backoff.from_settings(s),
                batch_items=s.batch_items,
                clock=steady_ms,
            )
            self._sender.start()
        # Offline, the archive itself is the durable store: each message is appended and
        # flushed as it is queued, so a kill -9 leaves nothing only in the outbox, which no
        # offline run would ever send.
        if self.attachment.first_answer is not None:
            self._apply_keepalive(self.attachment.first_answer)
        return self.attachment

    def begin(self, pid: int | None = None) -> None:
        """Queue the static facts of `pid` (default the configured one), start the jobs."""
        if pid is not None:
            self._pid = pid
        attachment = self.attachment
        if attachment is None:
            raise AgentError("begin() before open()")
        if self._offline_note:
            logger.info("agent.offline", **self._offline_note)
        self._build_samplers()
        self._queue(self._start_facts(attachment))
        self._schedule_jobs()
        self._scheduler.start()
        self._began.set()
        sd_notify(f"READY=1\nSTATUS=attached to {attachment.experiment_key}")
        self._write_status()
        logger.info(
            "agent.ready",
            experiment_key=attachment.experiment_key,
            link=attachment.link,
            offline=attachment.offline,
            context=self.identity.context,
            leader=self.leader,
            intervals=self._policy.current.as_dict(),
        )

    def _open_outbox(self, path: Path) -> Outbox:
        try:
            return Outbox(path, max_bytes=self.settings.outbox_max_bytes, clock=steady_ms)
        except CorruptOutbox as exc:
            # Moved aside, never deleted: its rows can still be read by hand. A daemon that
            # refused to start would lose every sample from now on instead.
            logger.error("outbox.corrupt", path=str(path), error=str(exc))
            return Outbox(
                path, max_bytes=self.settings.outbox_max_bytes, clock=steady_ms, recover=True
            )

    def _adopt_orphans(self) -> None:
        """Move what ended runs could not deliver into this outbox, in order."""
        assert self._state is not None  # noqa: S101 - set by start()
        assert self._outbox is not None  # noqa: S101
        for path in self._state.orphans():
            try:
                orphan = Outbox(path, max_bytes=self.settings.outbox_max_bytes)
            except OutboxError as exc:
                logger.error("outbox.orphan_unreadable", path=str(path), error=str(exc))
                continue
            moved = 0
            while batch := orphan.lease(500):
                self._outbox.put_many([row.message for row in batch])
                orphan.ack([row.id for row in batch])
                moved += len(batch)
            orphan.close()
            if moved:
                logger.info("outbox.adopted", path=str(path), count=moved)

    def _attach(self) -> Attachment:
        s = self.settings
        if s.offline:
            # Logged by begin(): the first line logged loads structlog, and under `run` the
            # command should not wait for that.
            self._offline_note = {
                "reason": s.offline_reason,
                "directory": str(s.offline_directory),
            }
            return offline_attachment(s)
        self._heartbeat_client = self._client()
        with self._client() as client:
            try:
                return attach(s, client, stop=self.stop_event)
            except ApiError as exc:
                if not (self._fallback_offline and exc.retryable):
                    raise
                # `run` must not keep the training from starting: record offline instead.
                logger.warning(
                    "agent.offline_fallback", error=str(exc), directory=str(s.offline_directory)
                )
                from agent.config import replace

                self.settings = replace(s, offline=True)
                return offline_attachment(self.settings)

    def _client(self) -> CometClient:
        from agent.api.client import CometClient

        s = self.settings
        extra = (
            {s.allow_header_name: s.allow_header_value}
            if (s.allow_header_name and s.allow_header_value)
            else {}
        )
        return CometClient(
            api_key=s.api_key,
            url_override=s.url_override,
            timeout_s=s.http_timeout_s,
            connect_timeout_s=s.connect_timeout_s,
            verify=str(s.ca_bundle) if s.ca_bundle else s.verify_tls,
            extra_headers=extra,
            compress=s.compress,
        )

    def _make_sink(self, attachment: Attachment) -> Sink:
        s = self.settings
        if attachment.offline:
            from agent.sinks.offline import OfflineSink

            given = bool(s.experiment_key)
            sink = OfflineSink(
                s.offline_directory,
                attachment.experiment_key,
                workspace=s.workspace,
                project=s.project_name,
                start_ms=self.started_ms,
                resume_strategy="get_or_create" if given else "create",
                user_provided_key=given,
            )
            for done in sink.recovered:
                logger.warning(
                    "archive.recovered",
                    path=str(done.path),
                    lines=done.lines,
                    problems=list(done.problems),
                )
            self._offline_sink = sink
            return sink
        from agent.sinks.rest import RestSink

        return RestSink(self._client())

    def _start_facts(self, attachment: Attachment) -> list[Message]:
        from agent.facts import gather, start_messages

        gpu_facts = None
        gpu = self._gpu_sampler()
        if gpu is not None:
            try:
                gpu_facts = gpu.facts()  # type: ignore[attr-defined]
            except CollectorError as exc:
                logger.info("gpu.facts_unreadable", error=str(exc))
        facts = gather(
            self.settings,
            command=self._command,
            pid=self._pid or os.getpid(),
            python=self._python,
            roots=self._roots,
            gpu_static_info=gpu_facts.static_info if gpu_facts else None,
            gpu_additional=gpu_facts.additional if gpu_facts else (),
            with_git=self.leader,
        )
        for note in facts.notes:
            logger.info("facts.note", note=note)
        if self._pid is None:
            facts = replace(facts, file_path=None)  # the agent's own argv is no training script
        return start_messages(
            facts,
            attachment.experiment_key,
            identity=self.identity,
            leader=self.leader,
            owned=attachment.owned,
            started_ms=self.started_ms,
        )

    # -- jobs ------------------------------------------------------------------------------

    def _gpu_sampler(self) -> Sampler | None:
        if "gpu" in self._samplers:
            return self._samplers["gpu"][0] if self._samplers["gpu"] else None
        from agent.collect import gpu

        def off(reason: str) -> None:
            self._gpu_note = reason
            logger.info("gpu.off", reason=reason)

        watched = self._watched_pids if self._pid else None
        sampler = gpu.gpu_sampler(self.settings, watched_pids=watched, on_unavailable=off)
        if sampler is not None:
            for note in sampler.notes:
                logger.info("gpu.note", note=note)
        self._samplers["gpu"] = [sampler] if sampler is not None else []
        return sampler

    def _watched_pids(self) -> set[int]:
        from agent.collect import process

        # Pids as this /proc sees them: the host's when the agent runs on the host, which is
        # what NVML reports. Inside a container of its own the agent sees container pids.
        return process.tree_pids(self._pid or os.getpid(), roots=self._roots)

    def _build_samplers(self) -> None:
        from agent.collect.system import system_samplers

        self._samplers["cpu"] = system_samplers(self.settings, roots=self._roots, pid=self._pid)
        self._gpu_sampler()

    def _schedule_jobs(self) -> None:
        current = self._policy.current
        if self._samplers.get("cpu"):
            self._scheduler.add("sample.cpu", self._job("sample.cpu", "cpu"), current.cpu_s)
        if self._samplers.get("gpu"):
            self._scheduler.add("sample.gpu", self._job("sample.gpu", "gpu"), current.gpu_s)
        if not self.settings.offline:
            self._scheduler.add(
                "heartbeat",
                guarded("heartbeat", self._heartbeat, self._limiter),
                current.beat_s,
                run_now=self.attachment is None or self.attachment.first_answer is None,
            )
        if self._offline_sink is not None:
            # Keeps experiment.json's stop_time current, so a crashed run's archive is whole.
            checkpoint = guarded("archive.checkpoint", self._offline_sink.checkpoint, self._limiter)
            self._scheduler.add("archive.checkpoint", checkpoint, 10.0, run_now=False)
        self._scheduler.add(
            "status",
            guarded("status", self._write_status, self._limiter),
            STATUS_EVERY_S,
            run_now=False,
        )
        period = watchdog_period_s(self._environ)
        if period:
            # From the scheduler's own threads: a wedged scheduler stops the pings and
            # systemd restarts the agent.
            self._scheduler.add("watchdog", _watchdog_ping, period)

    def _job(self, job_id: str, group: str) -> Callable[[], None]:
        def run() -> None:
            self.sample(group)

        return guarded(job_id, run, self._limiter)

    def sample(self, group: str) -> None:
        """Take one sample of every sampler in `group` and queue the messages."""
        key = self.experiment_key
        channels = Channels(
            sys_metrics=self.settings.sys_metrics,
            typed=self.settings.typed_endpoints,
            context=self.identity.context,
            prefix=self.settings.node_identifier,
        )
        messages: list[Message] = []
        taken: list[tuple[str, Sample, int]] = []
        for sampler in self._samplers.get(group, []):
            sample = self._collect(sampler)
            if sample is None:
                continue
            queued = to_messages(sample, key, channels)
            messages.extend(queued)
            taken.append((sampler.name, sample, len(queued)))
        written = self._queue(messages)
        for name, sample, count in taken:
            # After the write: the fault suite compares these lines with what arrived
            # (`items` metric-batch items, `written` false while held in memory).
            logger.debug(
                "sample.queued",
                collector=name,
                timestamp_ms=sample.timestamp_ms,
                messages=count,
                items=len(sample.metrics),
                written=written,
            )
            self._events(sample.events)
            self._unsupported(name, sample)

    def _collect(self, sampler: Sampler) -> Sample | None:
        with self._collector_lock:
            state = self._collector_state.setdefault(sampler.name, {"failures": 0})
        try:
            sample = sampler.collect()
        except NoData as exc:
            logger.debug("collector.no_data", collector=sampler.name, error=str(exc))
            return None
        except CollectorError as exc:
            with self._collector_lock:
                state["failures"] = int(state["failures"]) + 1  # type: ignore[call-overload]
                state["last_error"] = str(exc)
            repeats = self._limiter.check(f"collector:{sampler.name}")
            if repeats is not None:
                logger.warning(
                    "collector.failed", collector=sampler.name, error=str(exc), repeats=repeats
                )
            return None
        if self._limiter.reset(f"collector:{sampler.name}"):
            logger.info("collector.recovered", collector=sampler.name)
        with self._collector_lock:
            state["last_ok_ms"] = sample.timestamp_ms
        return sample

    def _events(self, events: Sequence[HealthEvent]) -> None:
        for event in events:
            logger.warning("health.event", kind=event.kind, message=event.message)
            line = getattr(self.output, "line", None)
            if callable(line):
                line(f"[comet-agent] {event.message}\n", stderr=True)
            from agent.api import bodies

            self._queue(
                [
                    Message(
                        "log-other",
                        self.experiment_key,
                        bodies.log_other(
                            f"comet_agent.{event.kind}", event.message, event.timestamp_ms
                        ),
                        event.timestamp_ms,
                        Kind.FACT,
                    )
                ]
            )

    def _unsupported(self, name: str, sample: Sample) -> None:
        for field_name in sorted(sample.unsupported - self._unsupported_seen):
            self._unsupported_seen.add(field_name)
            logger.info("collector.unsupported", collector=name, field=field_name)

    def _heartbeat(self) -> None:
        assert self._heartbeat_client is not None  # noqa: S101 - online only
        at = now_ms()
        client, key = self._heartbeat_client, self.experiment_key
        try:
            answer = self._worker.call(lambda: client.call("keep-alive", experiment_key=key))
        except ApiError as exc:
            self._last_beat = {"at_ms": at, "ok": False, "error": str(exc)}
            raise
        if answer is _STOPPED:
            return
        self._last_beat = {"at_ms": at, "ok": True, "answer": answer}
        before = self._policy.current
        self._apply_keepalive(answer)
        if self._policy.current != before:
            self._write_status()  # so `status` shows a new interval at once; else every 5 s

    def _apply_keepalive(self, answer: object) -> None:
        before = self._policy.current
        change = self._policy.apply(answer)
        for name, value in change.ignored:
            if self._limiter.check(f"keepalive.ignored:{name}") is not None:
                logger.warning("keepalive.ignored", field=name, value=str(value)[:60])
        for name, asked, applied in change.clamped:
            if self._limiter.check(f"keepalive.clamped:{name}:{asked}") is not None:
                logger.warning("keepalive.clamped", field=name, asked_s=asked, applied_s=applied)
        after = self._policy.current
        for job_id, old, new in (
            ("heartbeat", before.beat_s, after.beat_s),
            ("sample.cpu", before.cpu_s, after.cpu_s),
            ("sample.gpu", before.gpu_s, after.gpu_s),
        ):
            if old != new and self._scheduler.reschedule(job_id, new):
                logger.info("schedule.changed", job=job_id, interval_s=new, previous_s=old)

    # -- the outbox ------------------------------------------------------------------------

    def put(self, messages: Sequence[Message]) -> None:
        """Queue messages for delivery (used by the run wrapper's output stream)."""
        self._queue(messages)

    def _queue(self, messages: Sequence[Message]) -> bool:
        """Write `messages` (after any held ones) to the outbox; False when held in memory."""
        if not messages:
            return True
        assert self._outbox is not None  # noqa: S101
        with self._pending_lock:
            batch = [*self._pending, *messages]
            try:
                if self._offline_sink is not None:
                    batch = self._write_archive(batch)
                else:
                    self._outbox.put_many(batch)
            except (OutboxError, ApiError) as exc:
                # Disk full or the file gone: hold on in memory, retry with the next batch.
                self._pending = deque(batch)
                dropped = 0
                while len(self._pending) > PENDING_MAX:
                    self._pending.popleft()
                    dropped += 1
                repeats = self._limiter.check("outbox.put_failed")
                if repeats is not None or dropped:
                    logger.error(
                        "outbox.put_failed",
                        error=str(exc),
                        held=len(self._pending),
                        dropped=dropped,
                    )
                return False
            if self._pending:
                logger.info("outbox.put_recovered", count=len(self._pending))
            self._pending.clear()
        if self._sender is not None:
            self._sender.wake()
        return True

    def _write_archive(self, batch: list[Message]) -> list[Message]:
        """Append `batch` to the offline archive, one message at a time; raise on a disk error
        with the unwritten rest left in `batch` (the caller keeps it)."""
        assert self._offline_sink is not None  # noqa: S101
        while batch:
            msg = batch[0]
            self._offline_sink.send(msg.endpoint, msg.experiment_key, msg.body, msg.attachment)
            batch.pop(0)
        return batch

    # -- the main loop and stop ------------------------------------------------------------

    def wait(self, *, watch_pid: int | None = None, exit_with: str | None = None) -> str:
        """Block until a signal, the watched pid's exit or the exit-with condition; say which."""
        clock = ClockWatch()
        watched_start = _start_time(watch_pid) if watch_pid else None
        while not self.stop_event.wait(1.0):
            jump = clock.jumped()
            if jump is not None:
                logger.warning("clock.jumped", jump_s=round(jump, 1))
                self._scheduler.resync()
            if watch_pid and not _alive(watch_pid, watched_start):
                logger.info("agent.watched_exit", pid=watch_pid)
                return "watched process exited"
            if exit_with and _exit_condition(exit_with):
                logger.info("agent.exit_with", condition=exit_with)
                return f"{exit_with} done"
        return "signal"

    def stop(self, *, child: ChildExit | None = None) -> bool:
        """Stop sampling, send the last sample and the end, flush within the deadline."""
        if self._stopped:
            return True
        self._stopped = True
        # One budget for the whole stop: the last sample, the end messages and the flush.
        deadline = monotonic_s() + self.settings.stop_timeout_s
        self._stopping.set()
        sd_notify("STOPPING=1")
        logger.info("agent.stopping")
        if self._began.is_set():
            self._scheduler.shutdown(wait=True)
        drained = True
        try:
            if self.attachment is not None:
                for group in ("cpu", "gpu") if self._began.is_set() else ():
                    if self._samplers.get(group):
                        self.sample(group)  # the last samples: the window an in-process SDK loses
                close = getattr(self.output, "close", None)
                if callable(close):
                    close()
                self._queue(self._end_messages(child))
                drained = self._flush(deadline)
                self._report_unwritten()
        finally:
            for samplers in self._samplers.values():
                for sampler in samplers:
                    sampler.close()
            self._finish()
        return drained

    def _end_messages(self, child: ChildExit | None) -> list[Message]:
        from agent.api import bodies

        key = self.experiment_key
        end = now_ms()
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
                    out.append(
                        Message(
                            "log-other",
                            key,
                            bodies.log_other(f"comet_agent.{name}", value, end),
                            end,
                            Kind.FACT,
                        )
                    )
            if child.crashed and self.leader:
                reason = child.error or (
                    f"killed by signal {child.signal}"
                    if child.signal
                    else f"exit code {child.exit_code}"
                )
                if child.oom_killed:
                    reason += " (out of memory)"
                out.append(
                    Message(
                        "update-status",
                        key,
                        bodies.update_status(alive=False, error=reason, crashed=True),
                        end,
                        Kind.FACT,
                    )
                )
        if self.attachment is not None and self.attachment.owned and self.leader:
            out.append(
                Message(
                    "set-start-end-time",
                    key,
                    bodies.start_end_time(self.started_ms, end),
                    end,
                    Kind.FACT,
                )
            )
        if self._sender is not None and self._sender.status().throttled_ever:
            out.append(Message("mark-not-throttled", key, {}, end, Kind.FACT))
        return out

    def _flush(self, deadline: float) -> bool:
        if self._sender is None:
            return True
        drained = self._sender.flush(max(0.0, deadline - monotonic_s()))
        # A request still in flight (a slow server) gets a short grace, not its whole timeout:
        # its rows stay leased on disk and go out again at the next start.
        self._sender.stop(timeout_s=max(SENDER_GRACE_S, deadline - monotonic_s()))
        if not drained and self._outbox is not None:
            stats = self._outbox.stats()
            logger.warning(
                "outbox.kept",
                count=stats.ready + stats.leased,
                hint="sent at the next start of comet-agent on this state directory",
            )
        return drained

    def _report_unwritten(self) -> None:
        """Say what dies with the process: messages held in memory that never reached the disk."""
        with self._pending_lock:
            held = list(self._pending)
        if held:
            by_kind = Counter(msg.kind.name.lower() for msg in held)
            logger.error(
                "outbox.unwritten",
                count=len(held),
                by_kind=dict(by_kind),
                first_ms=min(msg.created_ms for msg in held),
                last_ms=max(msg.created_ms for msg in held),
                hint="the outbox could not be written (disk full?); these are lost",
            )

    def _finish(self) -> None:
        if self._sink is not None:
            self._sink.close()
        if self._offline_sink is not None:
            from agent.archive import upload_hint

            self._archive_hint = upload_hint(self._offline_sink.path)
            print(self._archive_hint, file=sys.stderr)  # the one line an offline run promises
        self._write_status(final=True)
        if self._outbox is not None:
            self._outbox.close()
        if self._heartbeat_client is not None:
            self._heartbeat_client.close()
        if self._state is not None:
            self._state.release()

    # -- status ----------------------------------------------------------------------------

    def status(self, *, final: bool = False) -> dict[str, object]:
        """A snapshot for ``comet-agent status``."""
        outbox = asdict(self._outbox.stats()) if self._outbox is not None and not final else None
        sender = asdict(self._sender.status()) if self._sender is not None else None
        a = self.attachment
        return {
            "version": __version__,
            "pid": os.getpid(),
            "running": not final,
            "started_ms": self.started_ms,
            "updated_ms": now_ms(),
            "experiment_key": a.experiment_key if a else None,
            "link": a.link if a else None,
            "offline": a.offline if a else self.settings.offline,
            "owned": a.owned if a else None,
            "leader": self.leader,
            "identity": self.identity.as_dict(),
            "intervals": self._policy.current.as_dict(),
            "follow_server": self.settings.follow_server,
            "last_beat": self._last_beat,
            "outbox": outbox,
            "sender": sender,
            "pending_in_memory": len(self._pending),
            "collectors": self._collectors(),
            "gpu": self._gpu_note or "on",
            "archive_hint": self._archive_hint,
        }

    def _collectors(self) -> dict[str, dict[str, object]]:
        with self._collector_lock:
            return {name: dict(state) for name, state in self._collector_state.items()}

    def _write_status(self, final: bool = False) -> None:
        if self._state is None:
            return
        data = self.status(final=final)
        try:
            self._state.write_status(data)
        except OSError as exc:
            logger.debug("status.unwritable", error=str(exc))
        outbox = data.get("outbox")
        if isinstance(outbox, dict) and not final:
            sd_notify(
                f"STATUS=experiment {data['experiment_key']}; backlog "
                f"{outbox.get('ready', 0)} messages"
            )


def _watchdog_ping() -> None:
    sd_notify("WATCHDOG=1")


_STOPPED = object()


class _Worker:
    """One daemon thread for calls a job makes that must not hold up the stop (the keep-alive).

    The scheduler's pool threads are joined at shutdown and again at interpreter exit, so a
    keep-alive waiting out its read timeout there would hold the stop past its deadline. A
    daemon thread is not joined; one long-lived thread costs less than one per beat.
    """

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], _Outcome]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[[], object]) -> object:
        """Return `fn()` (or raise its error); _STOPPED once the agent is stopping."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="keep-alive", daemon=True)
            self._thread.start()
        outcome = _Outcome()
        self._calls.put((fn, outcome))
        while not outcome.done.wait(0.1):
            if self._stopping.is_set():
                return _STOPPED
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    def _run(self) -> None:
        while True:
            fn, outcome = self._calls.get()
            try:
                outcome.value = fn()
            except Exception as exc:  # noqa: BLE001 - handed to the waiting job, which raises it
                outcome.error = exc
            finally:
                outcome.done.set()


class _Outcome:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: Exception | None = None


def _start_time(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - psutil raises several kinds; any means "not there"
        return None


def _alive(pid: int, started: float | None) -> bool:
    try:
        import psutil

        proc = psutil.Process(pid)
        # A recycled pid is another process: compare the start time.
        return started is None or proc.create_time() == started
    except Exception:  # noqa: BLE001
        return False


def _exit_condition(spec: str) -> bool:
    if spec.isdigit():
        return not _alive(int(spec), None)
    return Path(spec).exists()


# -- comet-agent start --------------------------------------------------------------------


def install_signals(agent: Agent) -> None:
    """SIGTERM/SIGINT ask for a clean stop; a second one exits at once (the outbox is on disk)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if agent.stop_event.is_set():
            logger.warning("agent.forced_exit", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        agent.stop_event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``comet-agent start`` until stopped; return the exit status."""
    from agent import sidecar
    from agent.hardening import disable_core_dumps

    disable_core_dumps()  # the API key is in this process's memory (agent.hardening)

    identity = identify(os.environ)
    settings = sidecar.resolve_key(
        settings, args.experiment_key_file, leader=is_leader(identity, settings.role)
    )
    agent = Agent(settings, pid=args.watch_pid, command=_watched_command(args.watch_pid))
    install_signals(agent)
    attachment = agent.start()
    if args.experiment_key_file:
        sidecar.publish_key(args.experiment_key_file, attachment.experiment_key)
    where = f" {attachment.link}" if attachment.link else ""
    mode = "offline" if attachment.offline else "attached"
    print(f"comet-agent: {mode} experiment {attachment.experiment_key}{where}", flush=True)
    try:
        reason = agent.wait(watch_pid=args.watch_pid, exit_with=args.exit_with)
        logger.info("agent.stop_requested", reason=reason)
    finally:
        agent.stop()
    return 0


def _watched_command(pid: int | None) -> list[str] | None:
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None


def monotonic_s() -> float:
    """Seconds on the monotonic clock."""
    return time.monotonic()
