"""The agent's lifecycle: open, begin, wait, stop.

``Agent.open()`` takes the state directory, attaches (or creates, or goes
offline) and starts delivery; ``begin(pid)`` queues the static facts and
starts the jobs; ``wait()`` is the main thread's loop (signals, the watched
pid, the wall clock); ``stop()`` takes a last sample, queues the end, and
flushes within one deadline. Whatever is not delivered by then stays in the
outbox for the next start on the same state directory.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__, log
from agent.attach import Attachment, attach, offline_attachment
from agent.collect.base import Roots
from agent.config import Settings
from agent.delivery import Delivery, open_outbox
from agent.ending import ChildExit, end_messages
from agent.errors import AgentError, ApiError, CollectorError
from agent.heartbeat import Heartbeat
from agent.keepalive import IntervalPolicy
from agent.message import Message, now_ms
from agent.multinode import Identity, identify, is_leader
from agent.notify import sd_notify, watchdog_period_s
from agent.samples import Channels
from agent.sampling import Sampling
from agent.schedule import ClockWatch, Scheduler, guarded
from agent.sinks.base import Sink
from agent.state import StateDir
from agent.watch import alive, exit_condition, start_time

if TYPE_CHECKING:
    # Imported where used: `run` starts the command before facts are gathered, and an
    # offline run never loads requests.
    from agent.sinks.offline import OfflineSink

logger = log.get_logger(__name__)
# Cost: at 1 s sampling the status rewrite and the archive's fsyncs were a visible share of an
# idle agent's CPU. `status` calls a snapshot stale after 30 s (three missed); a power cut
# loses at most one checkpoint interval of archive lines (a kill -9 loses nothing).
STATUS_EVERY_S = 10.0
CHECKPOINT_EVERY_S = 30.0
FIRST_SAMPLE_S = 1.0

__all__ = ["Agent", "ChildExit"]


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
    ) -> None:
        self.settings = settings
        self._command = list(command) if command else list(sys.argv)
        self._pid = pid
        self._python = python
        self._roots = roots or Roots()
        self._environ = dict(os.environ if environ is None else environ)
        self._fallback_offline = fallback_offline
        self._private_state = private_state
        self.stop_event = threading.Event()  # set by a signal: main thread, please stop
        self._stopping = threading.Event()  # set by stop(): a keep-alive in flight is abandoned
        self.identity: Identity = identify(self._environ)
        self.leader = is_leader(self.identity, settings.role)
        self.attachment: Attachment | None = None
        self.started_ms = now_ms()
        self.output: object = None  # an OutputStream under `run`
        self._limiter = log.RateLimiter()
        self._scheduler = Scheduler()
        self._heartbeat = Heartbeat(
            IntervalPolicy(settings), self._scheduler, self._limiter, self._stopping
        )
        self._sampling = Sampling(settings, self._roots, self._limiter)
        self._state: StateDir | None = None
        self._delivery: Delivery | None = None
        self._archive: OfflineSink | None = None  # offline: the archive is the sink
        self._copy: OfflineSink | None = None  # online with local_copy: what is sent, kept
        self._offline_note: dict[str, str | None] = {}
        self._archive_hint: str | None = None
        self._began = threading.Event()
        self._stopped = False

    @property
    def experiment_key(self) -> str:
        """The attached experiment's key."""
        if self.attachment is None:
            raise AgentError("the agent is not attached to an experiment yet")
        return self.attachment.experiment_key

    # -- start -----------------------------------------------------------------------------

    def start(self) -> Attachment:
        """Attach and begin sampling at once (``comet-agent start``); return the attachment."""
        attachment = self.open()
        self.begin()
        return attachment

    def open(self) -> Attachment:
        """Take the state directory, attach (or create, or go offline), start delivery."""
        s = self.settings
        self._state = StateDir.acquire(s.state_directory, private_fallback=self._private_state)
        outbox = open_outbox(self._state.outbox_path, s)
        self.attachment = self._attach()
        self._delivery = Delivery(
            outbox,
            self._make_sink(self.attachment),
            s,
            archive=self._archive,
            copy=self._copy,
            limiter=self._limiter,
        )
        if self._archive is None:
            self._delivery.adopt(self._state, s)
        self._delivery.start()
        if self.attachment.first_answer is not None:
            self._heartbeat.apply(self.attachment.first_answer)
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
        self._sampling.build(self._pid)
        self.put(self._start_facts(attachment))
        _return_freed_memory()
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
            intervals=self._heartbeat.policy.current.as_dict(),
        )

    def _attach(self) -> Attachment:
        s = self.settings
        if s.offline:
            # Logged by begin(): the first line logged loads structlog, and under `run` the
            # command should not wait for that.
            self._offline_note = {"reason": s.offline_reason, "directory": str(s.offline_directory)}
            return offline_attachment(s)
        from agent.api.client import CometClient

        with CometClient.from_settings(s) as client:
            try:
                attachment = attach(s, client, stop=self.stop_event)
            except ApiError as exc:
                if not (self._fallback_offline and exc.retryable):
                    raise
                # `run` must not keep the training from starting: record offline instead.
                logger.warning(
                    "agent.offline_fallback", error=str(exc), directory=str(s.offline_directory)
                )
                self.settings = replace(s, offline=True)
                return offline_attachment(self.settings)
        self._heartbeat.client = CometClient.from_settings(s)
        self._heartbeat.key = attachment.experiment_key
        return attachment

    def _make_sink(self, attachment: Attachment) -> Sink:
        s = self.settings
        if attachment.offline:
            self._archive = self._open_archive(s.offline_directory, attachment.experiment_key)
            return self._archive
        if s.local_copy:
            directory = s.local_copy_directory
            try:
                # The experiment exists online: should the copy ever be uploaded, it adds to it.
                self._copy = self._open_archive(directory, attachment.experiment_key, given=True)
            except (OSError, AgentError) as exc:
                logger.warning(
                    "local_copy.unavailable",
                    directory=str(directory),
                    error=getattr(exc, "strerror", None) or str(exc),
                    hint="sending goes on; set COMET_OFFLINE_DIRECTORY to a writable place",
                )
        from agent.api.client import CometClient
        from agent.sinks.rest import RestSink

        return RestSink(CometClient.from_settings(s))

    def _open_archive(self, directory: Path, key: str, *, given: bool = False) -> OfflineSink:
        from agent.sinks.offline import OfflineSink

        s = self.settings
        given = given or bool(s.experiment_key)
        archive = OfflineSink(
            directory,
            key,
            workspace=s.workspace,
            project=s.project_name,
            start_ms=self.started_ms,
            resume_strategy="get_or_create" if given else "create",
            user_provided_key=given,
            checkpoint_s=CHECKPOINT_EVERY_S,
        )
        for done in archive.recovered:
            logger.warning(
                "archive.recovered",
                path=str(done.path),
                lines=done.lines,
                problems=list(done.problems),
            )
        return archive

    def _start_facts(self, attachment: Attachment) -> list[Message]:
        from agent.facts import gather, start_messages

        gpu_facts = None
        gpu = self._sampling.gpu(self._pid)
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

    def _schedule_jobs(self) -> None:
        current = self._heartbeat.policy.current
        for group, interval_s in (("cpu", current.cpu_s), ("gpu", current.gpu_s)):
            if self._sampling.groups.get(group):
                job = guarded(f"sample.{group}", partial(self.sample, group), self._limiter)
                # The first sample a second in: utilisation is measured since the samplers
                # were primed, and a window of a few milliseconds reads as a meaningless 0 %.
                self._scheduler.add(f"sample.{group}", job, interval_s, first_in_s=FIRST_SAMPLE_S)
        if self._heartbeat.client is not None:
            first_answer = self.attachment is not None and self.attachment.first_answer is not None
            self._scheduler.add(
                "heartbeat",
                guarded("heartbeat", self._beat, self._limiter),
                current.beat_s,
                run_now=not first_answer,
            )
        archive = self._archive or self._copy
        if archive is not None:
            # Keeps experiment.json's stop_time current, so a crashed run's archive is whole.
            checkpoint = guarded("archive.checkpoint", archive.checkpoint, self._limiter)
            self._scheduler.add("archive.checkpoint", checkpoint, CHECKPOINT_EVERY_S, run_now=False)
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

    def _beat(self) -> None:
        if self._heartbeat.beat():
            self._write_status()  # so `status` shows a new interval at once; else every 10 s

    def sample(self, group: str, *, final: bool = False) -> None:
        """Take one sample of every sampler in `group` and queue the messages."""
        channels = Channels(
            sys_metrics=self.settings.sys_metrics,
            typed=self.settings.typed_endpoints,
            context=self.identity.context,
            prefix=self.settings.node_identifier,
        )
        line = getattr(self.output, "line", None)

        def to_output(text: str) -> None:
            if callable(line):
                line(text, stderr=True)

        self._sampling.sample(
            group,
            self.experiment_key,
            channels,
            self.put,
            to_output if callable(line) else None,
            final=final,
        )

    def put(self, messages: Sequence[Message]) -> bool:
        """Queue messages for delivery; False when they are held in memory (disk full)."""
        if self._delivery is None:
            raise AgentError("put() before open()")
        return self._delivery.put(messages)

    # -- the main loop and stop ------------------------------------------------------------

    def wait(self, *, watch_pid: int | None = None, exit_with: str | None = None) -> str:
        """Block until a signal, the watched pid's exit or the exit-with condition; say which."""
        clock = ClockWatch()
        watched_start = start_time(watch_pid) if watch_pid else None
        while not self.stop_event.wait(1.0):
            jump = clock.jumped()
            if jump is not None:
                logger.warning("clock.jumped", jump_s=round(jump, 1))
                self._scheduler.resync()
            if watch_pid and not alive(watch_pid, watched_start):
                logger.info("agent.watched_exit", pid=watch_pid)
                return "watched process exited"
            if exit_with and exit_condition(exit_with):
                logger.info("agent.exit_with", condition=exit_with)
                return f"{exit_with} done"
        return "signal"

    def stop(self, *, child: ChildExit | None = None) -> bool:
        """Stop sampling, send the last sample and the end, flush within the deadline."""
        if self._stopped:
            return True
        self._stopped = True
        # One budget for the whole stop: the last sample, the end messages and the flush.
        deadline = time.monotonic() + self.settings.stop_timeout_s
        self._stopping.set()
        sd_notify("STOPPING=1")
        logger.info("agent.stopping")
        if self._began.is_set():
            self._scheduler.shutdown(wait=True)
        drained = True
        try:
            if self.attachment is not None and self._delivery is not None:
                for group in ("cpu", "gpu") if self._began.is_set() else ():
                    self.sample(group, final=True)  # the window an in-process SDK loses
                close = getattr(self.output, "close", None)
                if callable(close):
                    close()
                self.put(
                    end_messages(
                        self.attachment.experiment_key,
                        child=child,
                        leader=self.leader,
                        owned=self.attachment.owned,
                        started_ms=self.started_ms,
                        end_ms=now_ms(),
                        throttled=self._delivery.throttled_ever,
                    )
                )
                drained = self._delivery.flush(max(0.0, deadline - time.monotonic()))
                self._delivery.report_unwritten()
        finally:
            self._sampling.close()
            self._finish()
        return drained

    def _finish(self) -> None:
        if self._delivery is not None:
            self._delivery.sink.close()  # an offline archive is zipped here
        if self._copy is not None:
            try:
                self._copy.close()
            except ApiError as exc:
                logger.warning("local_copy.unfinished", error=str(exc))
        if self._archive is not None:
            from agent.archive import upload_hint

            self._archive_hint = upload_hint(self._archive.path)
            print(self._archive_hint, file=sys.stderr)  # the one line an offline run promises
        self._write_status(final=True)
        if self._delivery is not None:
            self._delivery.outbox.close()
        if self._heartbeat.client is not None:
            self._heartbeat.client.close()
        if self._state is not None:
            self._state.release()

    # -- status ----------------------------------------------------------------------------

    def status(self, *, final: bool = False) -> dict[str, object]:
        """A snapshot for ``comet-agent status``."""
        a = self.attachment
        delivery = self._delivery.snapshot() if self._delivery is not None and not final else {}
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
            "intervals": self._heartbeat.policy.current.as_dict(),
            "follow_server": self.settings.follow_server,
            "last_beat": self._heartbeat.last,
            "outbox": delivery.get("outbox"),
            "sender": delivery.get("sender"),
            "pending_in_memory": delivery.get("pending_in_memory", 0),
            "collectors": self._sampling.collectors(),
            "gpu": self._sampling.gpu_note or "on",
            "archive": str(archive.path) if (archive := self._archive or self._copy) else None,
            "archive_hint": self._archive_hint,
        }

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


def _return_freed_memory() -> None:
    """Hand the facts' freed memory back to the OS (package lists, git output: megabytes).

    The facts are gathered once; what they allocated is freed, but glibc keeps the pages
    for later mallocs that a sampling loop never makes.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _watchdog_ping() -> None:
    sd_notify("WATCHDOG=1")
