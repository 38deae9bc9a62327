"""The keep-alive: beat, fold the answer into the intervals, reschedule the jobs that changed.

The call runs on one long-lived daemon thread of its own (``agent.worker``):
the scheduler joins its job threads at shutdown, so a keep-alive waiting out
its read timeout in one would hold the stop past its deadline. Once the agent
is stopping, the job stops waiting and a beat in flight is abandoned.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from agent import log
from agent.errors import ApiError, OutboxError
from agent.lifecycle.keepalive import IntervalPolicy
from agent.message import now_ms
from agent.schedule import Scheduler
from agent.worker import Stopped, Worker

if TYPE_CHECKING:
    from agent.api.client import CometClient
    from agent.delivery.outbox import Outbox
    from agent.delivery.sender import Sender

logger = log.get_logger(__name__)
JOBS = (("heartbeat", "beat_s"), ("sample.cpu", "cpu_s"), ("sample.gpu", "gpu_s"))
INTERVALS_KEY = "intervals."  # + experiment key, in the outbox's state table


class Heartbeat:
    """Beats for one experiment and keeps the scheduler on the intervals in force."""

    def __init__(
        self,
        policy: IntervalPolicy,
        scheduler: Scheduler,
        limiter: log.RateLimiter,
        stopping: threading.Event,
    ) -> None:
        self.policy = policy
        self._scheduler = scheduler
        self._limiter = limiter
        self._worker = Worker("keep-alive", stopping=stopping)
        self.last: dict[str, object] = {}
        self.client: CometClient | None = None
        self.key = ""
        self._outbox: Outbox | None = None
        self._sender: Sender | None = None

    def bind(self, outbox: Outbox, sender: Sender | None) -> None:
        """Keep the server's intervals in `outbox` and resume with them; end `sender`'s waits.

        A restart during an outage would otherwise sample at the 30 s default until Comet
        answers again, and the server asked for more.
        """
        self._outbox, self._sender = outbox, sender
        if not self.key:
            return
        try:
            stored = outbox.get_state(INTERVALS_KEY + self.key)
        except OutboxError:
            return
        try:
            saved = json.loads(stored) if stored else None
        except ValueError:
            saved = None
        if isinstance(saved, dict) and self.policy.restore(saved):
            logger.info("keepalive.resumed", intervals=self.policy.current.as_dict())

    def beat(self) -> bool:
        """Send one keep-alive and apply its answer; return whether the intervals changed."""
        client, key = self.client, self.key
        if client is None:
            return False
        at = now_ms()
        try:
            answer = self._worker.call(
                "keep-alive", lambda: client.call("keep-alive", experiment_key=key)
            )
        except Stopped:
            return False
        except ApiError as exc:
            self.last = {"at_ms": at, "ok": False, "error": str(exc)}
            raise
        self.last = {"at_ms": at, "ok": True, "answer": answer}
        if self._sender is not None:
            self._sender.recovered()  # Comet answers: an outage's back-offs end too
        return self.apply(answer)

    def apply(self, answer: object) -> bool:
        """Fold one answer into the intervals; reschedule what changed; say whether anything did."""
        before = self.policy.current
        change = self.policy.apply(answer)
        for name, value in change.ignored:
            if self._limiter.check(f"keepalive.ignored:{name}") is not None:
                logger.warning("keepalive.ignored", field=name, value=str(value)[:60])
        for name, asked, applied in change.clamped:
            if self._limiter.check(f"keepalive.clamped:{name}:{asked}") is not None:
                logger.warning("keepalive.clamped", field=name, asked_s=asked, applied_s=applied)
        after = self.policy.current
        for job_id, attr in JOBS:
            old, new = getattr(before, attr), getattr(after, attr)
            if old != new and self._scheduler.reschedule(job_id, new):
                logger.info("schedule.changed", job=job_id, interval_s=new, previous_s=old)
        if after != before:
            self._save()
        return after != before

    def _save(self) -> None:
        if self._outbox is None or not self.key:
            return
        try:
            self._outbox.set_state(
                INTERVALS_KEY + self.key, json.dumps(self.policy.current.as_dict())
            )
        except OutboxError as exc:  # a full disk: the intervals still hold in this process
            if self._limiter.check("keepalive.save_failed") is not None:
                logger.warning("keepalive.save_failed", error=str(exc))
