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
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__, log
from agent.collect.base import Roots
from agent.config import Settings
from agent.delivery.pipeline import Delivery, open_outbox
from agent.delivery.sinks.build import SinkBuilder
from agent.dirs import scratch_dirs
from agent.errors import AgentError, ApiError, CollectorError, ConfigError, OutboxError
from agent.lifecycle.attach import Attachment, join, planned_attachment
from agent.lifecycle.ending import ChildExit, end_messages
from agent.lifecycle.heartbeat import Heartbeat
from agent.lifecycle.keepalive import IntervalPolicy
from agent.lifecycle.multinode import Identity, identify, is_leader
from agent.lifecycle.notify import sd_notify, watchdog_period_s
from agent.lifecycle.samples import Channels
from agent.lifecycle.sampling import Sampling
from agent.lifecycle.state import StateDir
from agent.lifecycle.watch import alive, exit_condition, start_time
from agent.message import Message, now_ms
from agent.schedule import ClockWatch, Scheduler, guarded

if TYPE_CHECKING:
    # Imported where used: `run` starts the command before facts are gathered, and an
    # offline run never loads requests.
    from agent.api.client import CometClient
    from agent.delivery.outbox import Outbox
    from agent.delivery.sinks.offline import OfflineSink
    from agent.lifecycle.snapshot import StatusSnapshot
    from agent.wrap.output import OutputStream

logger = log.get_logger(__name__)
# Cost: at 1 s sampling the status rewrite and the archive's fsyncs were a visible share of an
# idle agent's CPU. `status` calls a snapshot stale after 30 s (three missed); a power cut
# loses at most one checkpoint interval of archive lines (a kill -9 loses nothing).
STATUS_EVERY_S = 10.0
UNJOINED_STATE = "unjoined_keys"  # outbox state: keys whose experiment may not exist yet
UNJOINED_MAX = 20
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
        private_state: bool = False,
        hands_key: bool = False,
        refusal_stops: bool = False,
        attachment: Attachment | None = None,
    ) -> None:
        self.settings = settings
        # `run` plans the key before the agent exists, so the command can start first.
        self._planned = attachment
        self._command = list(command) if command else list(sys.argv)
        self._pid = pid
        self._python = python
        self._roots = roots or Roots.host(settings.host_root)
        self._environ = dict(os.environ if environ is None else environ)
        self._private_state = private_state
        # The key is chosen (or given) now and the experiment made to exist in a thread of its
        # own: nothing waits for Comet; messages wait in the outbox until it has answered.
        self._hands_key = hands_key  # a command's SDK may record this key offline too
        self._refusal_stops = refusal_stops
        self._joined = threading.Event()
        # Set when the join is given up (the run went offline): not by stop() itself, so a
        # join in flight when a short command ends still lands within the stop budget.
        self._join_cancel = threading.Event()
        self._join_lock = threading.Lock()
        self._join_thread: threading.Thread | None = None
        self.join_error: str | None = None
        self.join_config_error = False  # the refusal is the user's settings (exit 2), not Comet's
        self.stop_event = threading.Event()  # set by a signal: main thread, please stop
        self._stopping = threading.Event()  # set by stop(): a keep-alive in flight is abandoned
        self.identity: Identity = identify(self._environ)
        self.leader = is_leader(self.identity, settings.role)
        self.attachment: Attachment | None = None
        self.started_ms = now_ms()
        self.output: OutputStream | None = None  # the command's output, under `run`
        self._limiter = log.RateLimiter()
        self._scheduler = Scheduler()
        self._heartbeat = Heartbeat(
            IntervalPolicy(settings), self._scheduler, self._limiter, self._stopping
        )
        self._sampling = Sampling(settings, self._roots, self._limiter)
        self._state: StateDir | None = None
        self._delivery: Delivery | None = None
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

    def open(self, *, join_now: bool = True) -> Attachment:
        """Take the state directory, attach (or create, or go offline), start delivery.

        Online, the experiment is made in a thread started here, or by ``start_join()``
        when `join_now` is false (``run``: once the command is spawned)."""
        outbox = self._take_state()
        s = self.settings
        self.attachment = self._attach()
        key = self.attachment.experiment_key
        state = self._state if self._private_state else None  # `run`: an archive goes on
        # The state directory is ours and writable (it holds the outbox); scratch ones after it.
        fallback = state.path / "offline" if state is not None else None
        sinks = SinkBuilder(
            s,
            self.started_ms,
            hands_key=self._hands_key,
            fallback=fallback,
            checkpoint_s=CHECKPOINT_EVERY_S,  # the archive's own, and the checkpoint job's
        )
        offline = self.attachment.offline
        self._delivery = Delivery.build(outbox, key, sinks, offline=offline, limiter=self._limiter)
        if not offline and self._state is not None:
            self._delivery.adopt(self._state, s)
        if not offline:
            # A keep-alive success reopens delivery's gates; the server's intervals are kept
            # per experiment, and resumed now (the key is known before Comet has answered).
            self._heartbeat.key = self.attachment.experiment_key
            self._heartbeat.bind(outbox, self._delivery.sender)
        if self.attachment.owned and s.experiment_name:
            # No create call carries the name: it travels as the SDK's own "Name" other.
            self.put(self._name_messages(self.attachment.experiment_key, s.experiment_name))
        if not self.attachment.offline:
            self._note_unjoined(self.attachment.experiment_key)  # until Comet has answered
            if join_now:
                self.start_join()
        else:
            self._joined.set()
            self._delivery.start()
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

    def _name_messages(self, key: str, name: str) -> list[Message]:
        from agent.api import bodies
        from agent.message import Kind

        ts = now_ms()
        return [Message("log-other", key, bodies.log_other("Name", name, ts), ts, Kind.FACT)]

    def start_join(self) -> None:
        """Start making the experiment exist (once; nothing to do offline or attached)."""
        if self._join_thread is not None or self._joined.is_set():
            return
        if self.attachment is None or self.attachment.offline:
            return
        self._join_thread = threading.Thread(target=self._join_loop, name="agent-join", daemon=True)
        self._join_thread.start()

    def _join_loop(self) -> None:
        """Make the experiment exist (create or join), then start sending; retried until stop.

        Keys of earlier runs on this state directory that were killed before Comet answered
        (their messages are still in the outbox) are made to exist first."""
        from agent.api.client import CometClient

        s = self.settings
        attachment, delivery = self.attachment, self._delivery
        if attachment is None or delivery is None:
            return
        earlier = [k for k in self._unjoined() if k != attachment.experiment_key]
        with CometClient.from_settings(s) as client:
            for key in earlier:
                if self._join_one(client, Attachment(key, None, owned=True, offline=False)):
                    self._mark_joined(key)
            joined = self._join_one(client, attachment)
        if joined is None:
            return
        with self._join_lock:
            if self._join_cancel.is_set():
                return
            self.attachment = joined
            self._heartbeat.client = CometClient.from_settings(s)
            self._heartbeat.key = joined.experiment_key
            if self._began.is_set() and not self._stopping.is_set():
                self._add_heartbeat()
            delivery.start()
            self._joined.set()
        self._mark_joined(joined.experiment_key)
        logger.info("experiment.joined", experiment_key=joined.experiment_key, link=joined.link)
        if joined.link:
            print(f"comet-agent: experiment {joined.link}", file=sys.stderr, flush=True)
        if self._began.is_set():
            self._write_status()

    def _join_one(self, client: CometClient, attachment: Attachment) -> Attachment | None:
        """`join` retried with back-off until it lands (None: refused, or stopped first)."""
        from random import Random

        from agent.delivery.backoff import Backoff

        backoff = Backoff(wait_initial=0.5, wait_max=min(30.0, self.settings.backoff_max_s))
        rand = Random()  # noqa: S311 - jitter, not secrets
        attempt = 0
        while not self._join_cancel.is_set():
            try:
                return join(self.settings, client, attachment)
            except (ApiError, ConfigError) as exc:
                # ConfigError: no workspace set and Comet names no default for the key.
                if isinstance(exc, ConfigError) or not exc.retryable:
                    # Never the training's problem: what is queued goes offline at stop.
                    self.join_error = str(exc)
                    self.join_config_error = isinstance(exc, ConfigError)
                    if self._refusal_stops:
                        self.stop_event.set()  # `start`: a daemon that cannot report says so
                    logger.warning(
                        "experiment.join_refused",
                        error=str(exc),
                        hint="the run is kept and written offline at its end; check the "
                        "API key, workspace and COMET_URL_OVERRIDE",
                    )
                    return None
                attempt += 1
                wait_s = backoff.delay(attempt, exc.retry_after_s, rand)
                if self._limiter.check("experiment.join_retry") is not None:
                    logger.warning("experiment.join_retry", error=str(exc), wait_s=round(wait_s, 1))
                if self._join_cancel.wait(wait_s):
                    return None
        return None

    def _unjoined(self) -> list[str]:
        """Keys queued for on this state directory whose experiment was never made to exist."""
        import json

        if self._delivery is None:
            return []
        try:
            raw = self._delivery.outbox.get_state(UNJOINED_STATE)
            keys = json.loads(raw) if raw else []
        except (OutboxError, ValueError):
            return []
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []

    def _note_unjoined(self, key: str) -> None:
        self._store_unjoined([*(k for k in self._unjoined() if k != key), key])

    def _mark_joined(self, key: str) -> None:
        self._store_unjoined([k for k in self._unjoined() if k != key])

    def _store_unjoined(self, keys: list[str]) -> None:
        import json

        if self._delivery is None:
            return
        try:
            self._delivery.outbox.set_state(UNJOINED_STATE, json.dumps(keys[-UNJOINED_MAX:]))
        except OutboxError as exc:  # the outbox is in trouble: its own reports say so
            logger.debug("outbox.state_unwritable", error=str(exc))

    def _take_state(self) -> Outbox:
        """Hold the state directory and open its outbox; under `run`, fall back to a scratch one."""
        s = self.settings
        try:
            return self._open_state(s.state_directory)
        except AgentError as exc:
            if not self._private_state:  # `run` only
                raise
            error = str(exc)
        # `run` must not keep the training from starting: a private scratch directory (0700,
        # ours) in $TMPDIR, else in /dev/shm (memory: a full disk does not reach it) holds the
        # outbox instead; what it could not deliver stays there, named in the one warning.
        for fallback in scratch_dirs():
            try:
                outbox = self._open_state(fallback)
            except AgentError:
                shutil.rmtree(fallback, ignore_errors=True)
                continue
            logger.warning("agent.state_fallback", error=error, directory=str(fallback))
            self.settings = replace(s, state_directory=fallback)
            return outbox
        raise StateUnusable(
            f"{error}; no temporary directory is writable either (disk full?): the command "
            "runs unmonitored"
        )

    def _open_state(self, directory: Path) -> Outbox:
        self._state = StateDir.acquire(directory, private_fallback=self._private_state)
        try:
            return open_outbox(self._state.outbox_path, self.settings)
        except BaseException:
            self._state.release()
            self._state = None
            raise

    def _attach(self) -> Attachment:
        s = self.settings
        if s.offline:
            # Logged by begin(): the first line logged loads structlog, and under `run` the
            # command should not wait for that.
            self._offline_note = {"reason": s.offline_reason, "directory": str(s.offline_directory)}
        return self._planned or planned_attachment(s)

    def _start_facts(self, attachment: Attachment) -> list[Message]:
        from agent.lifecycle.facts import gather, start_messages

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
        with self._join_lock:
            if self._heartbeat.client is not None:
                self._add_heartbeat()
        delivery = self._delivery
        if delivery is not None and delivery.local_archive is not None:
            # Keeps experiment.json's stop_time current, so a crashed run's archive is whole.
            checkpoint = guarded("archive.checkpoint", delivery.checkpoint, self._limiter)
            self._scheduler.add("archive.checkpoint", checkpoint, CHECKPOINT_EVERY_S, run_now=False)
        self._scheduler.add(
            "status",
            guarded("status", self._write_status, self._limiter),
            STATUS_EVERY_S,
            run_now=False,
        )
        state = self._state
        holds_main = state is not None and state.path.parent.name != "runs"
        online = delivery is not None and not delivery.offline
        if online and state is not None and delivery is not None and holds_main:
            # A `run` killed beside this daemon left its outbox in runs/<pid>: taken in
            # while the daemon runs, not only at its next start.
            adopt = partial(delivery.adopt, state, self.settings)
            self._scheduler.add(
                "outbox.adopt",
                guarded("outbox.adopt", adopt, self._limiter),
                self.settings.adopt_interval_s,
                run_now=False,
            )
        period = watchdog_period_s(self._environ)
        if period:
            # From the scheduler's own threads: a wedged scheduler stops the pings and
            # systemd restarts the agent.
            self._scheduler.add("watchdog", _watchdog_ping, period)

    def _add_heartbeat(self) -> None:
        self._scheduler.add(
            "heartbeat",
            guarded("heartbeat", self._beat, self._limiter),
            self._heartbeat.policy.current.beat_s,
        )

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
        output = self.output

        def to_output(text: str) -> None:
            if output is not None:
                output.line(text, stderr=True)

        self._sampling.sample(
            group,
            self.experiment_key,
            channels,
            self.put,
            to_output if output is not None else None,
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
                if self.output is not None:
                    self.output.close()
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
                if self._joined.is_set() or self._wait_joined(deadline):
                    drained = self._delivery.flush(max(0.0, deadline - time.monotonic()))
                else:
                    drained = self._divert_offline()
                self._delivery.report_unwritten()
        finally:
            self._sampling.close()
            self._finish()
        return drained

    def _archive_key(self) -> str:
        return self.attachment.experiment_key if self.attachment is not None else "-"

    def _wait_joined(self, deadline: float) -> bool:
        """Give a join in flight a moment to land (at most 2 s of the stop budget)."""
        thread = self._join_thread
        if thread is not None:
            thread.join(max(0.0, min(2.0, deadline - time.monotonic())))
        return self._joined.is_set()

    def _divert_offline(self) -> bool:
        """Comet never made the experiment exist: write what is queued to an offline archive,
        which ``comet-agent upload`` creates or joins later (same key)."""
        if self._delivery is None or self.attachment is None:
            return False
        with self._join_lock:
            self._join_cancel.set()  # a join landing now is ignored: the archive has the data
        key = self.attachment.experiment_key
        reason = self.join_error or "Comet did not answer before the end of the run"
        moved = self._delivery.fall_back_offline(key, reason)
        if moved is None:
            return False
        self._mark_joined(key)  # its messages are in the archive now: no one waits for it
        logger.warning("agent.offline_fallback", reason=reason, messages=moved)
        return True

    def _finish(self) -> None:
        with self._join_lock:
            self._join_cancel.set()  # a join still retrying has nothing left to start
        kept = None
        if self._delivery is not None:
            self._delivery.close_sinks()  # an offline archive is zipped here
            kept = self._delivery.kept
        if kept is not None:
            from agent.archive import upload_hint

            ours = kept.path
            # An SDK in the command recorded the same key offline: one upload takes both.
            theirs = sorted(
                p
                for p in ours.parent.glob(f"{self._archive_key()}*.zip")
                if p != ours and p.is_file()
            )
            self._archive_hint = upload_hint(ours, *theirs)
            print(self._archive_hint, file=sys.stderr)  # the one line an offline run promises
        self._write_status(final=True)
        drained = False
        if self._delivery is not None:
            try:
                stats = self._delivery.outbox.stats()
                drained = stats.ready + stats.leased + stats.dead == 0
            except OutboxError:
                drained = False  # cannot tell: keep it for the next agent to adopt
            self._delivery.outbox.close()
        if self._heartbeat.client is not None:
            self._heartbeat.client.close()
        if self._state is not None:
            # A run's private runs/<pid> directory whose outbox holds nothing goes with it.
            self._state.release(drained=drained)

    # -- status ----------------------------------------------------------------------------

    def status(self, *, final: bool = False) -> StatusSnapshot:
        """A snapshot for ``comet-agent status``."""
        # Here, not at the top: `run` spawns its command before the first snapshot.
        from agent.lifecycle.snapshot import (
            Beat,
            CollectorState,
            OutboxCounts,
            SenderState,
            SnapshotIdentity,
            SnapshotIntervals,
            StatusSnapshot,
        )

        a = self.attachment
        delivery = self._delivery if not final else None
        sender = delivery.sender if delivery is not None else None
        archive = self._local_archive()
        return StatusSnapshot(
            version=__version__,
            pid=os.getpid(),
            running=not final,
            started_ms=self.started_ms,
            updated_ms=now_ms(),
            stopped_cleanly=final,  # written last by stop(); a killed agent never says so
            experiment_key=a.experiment_key if a else None,
            link=a.link if a else None,
            offline=a.offline if a else self.settings.offline,
            owned=a.owned if a else None,
            leader=self.leader,
            identity=SnapshotIdentity.of(self.identity),
            intervals=SnapshotIntervals.of(self._heartbeat.policy.current),
            follow_server=self.settings.follow_server,
            last_beat=Beat.from_json(self._heartbeat.last),
            outbox=OutboxCounts.of(delivery.outbox.stats()) if delivery is not None else None,
            sender=SenderState.of(sender.status()) if sender is not None else None,
            pending_in_memory=delivery.held if delivery is not None else 0,
            collectors={
                name: CollectorState.from_json(state)
                for name, state in self._sampling.collectors().items()
            },
            gpu=self._sampling.gpu_note or "on",
            archive=str(archive.path) if archive else None,
            archive_hint=self._archive_hint,
        )

    def _local_archive(self) -> OfflineSink | None:
        return self._delivery.local_archive if self._delivery is not None else None

    def _write_status(self, final: bool = False) -> None:
        if self._state is None:
            return
        snapshot = self.status(final=final)
        try:
            self._state.write_status(snapshot)
        except OSError as exc:
            logger.debug("status.unwritable", error=str(exc))
        if snapshot.outbox is not None and not final:
            sd_notify(
                f"STATUS=experiment {snapshot.experiment_key}; backlog "
                f"{snapshot.outbox.ready} messages"
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


class StateUnusable(AgentError):
    """Neither the state directory nor a scratch one can hold an outbox (`run` goes on bare)."""
