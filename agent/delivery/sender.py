"""Sender: the one thread that drains the outbox into a sink, oldest first.

Each turn leases the oldest ready messages, merges runs of a ``MERGEABLE``
endpoint with equal ``merge_key()`` into one request (up to ``batch_items``
list items, each item untouched: nothing is re-stamped) and sends the rest one
request each. What happens to a request that fails depends on the error:

* retryable (5xx, 408/409, undecodable answer): that endpoint backs off
  (jittered, capped exponential, or exactly what ``Retry-After`` asked); other
  endpoints keep flowing.
* ``TransportError`` (no answer at all): everything backs off; the network is shared.
* ``ThrottledError`` (429): a throttle *incident* for that endpoint (wire §4.2)
  until ``Retry-After-Custom`` + 0.5 s or ``Retry-After`` (60 s without either);
  ``status().throttled_ever`` tells the daemon to send mark-not-throttled at the end.
* ``AuthError`` (401/403): all sending pauses for ``backoff.wait_max``, logged
  once with the fix; nothing is dropped, as the key may be rotated back.
* 404 and 413 may pass (a proxy or a deploy in between): the endpoint backs off
  and the message becomes a dead letter only after ``TRANSIENT_ATTEMPTS`` tries;
  a 413 on a merged batch splits it first. 404 on ``WRONG_URL_ENDPOINTS``
  different endpoints with no success between means a wrong server URL: all
  sending pauses as for a rejected key, logged once with the fix, no try counted.
* anything else from Comet (other 4xx, 501/505) or a message the client cannot
  build: a merged batch is split and re-sent message by message, then each
  message still refused becomes a dead letter (kept, counted, logged at ERROR).

The sender waits on events, never sleeps: ``wake()`` (a put happened) ends an
idle wait, ``stop()`` every wait. A batch cut short by ``stop()`` goes back to
the outbox untried with ``release()``. Delivery is at least once: a crash
between a 200 and the ack sends that request again after a restart.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from random import Random
from typing import Protocol
from urllib.parse import urlsplit

from agent import errors
from agent.delivery.backoff import Backoff
from agent.delivery.gates import ALL, Gates
from agent.delivery.outbox import Outbox, Stored
from agent.delivery.sinks.base import Sink
from agent.errors import AgentError, ApiError, AuthError, OutboxError, ThrottledError
from agent.log import RateLimiter, get_logger
from agent.message import MERGEABLE, Message, merge, now_ms

log = get_logger(__name__)

IDLE_WAIT_S = 1.0  # longest idle wait, so a stop_event set from outside is seen within a second
TRANSIENT_STATUSES = (404, 413)  # refusals that a proxy or a deploy can give for a while
TRANSIENT_ATTEMPTS = 8  # tries before such a refusal makes a dead letter (minutes at 60 s)
WRONG_URL_ENDPOINTS = 3  # endpoints answering 404 (none answering 200) that mean a wrong URL


@dataclass(frozen=True)
class SenderStatus:
    """What the sender has done and why it is waiting, for ``status`` and the daemon."""

    last_success_ms: int | None
    last_error: str | None
    last_error_ms: int | None
    paused_auth: bool
    throttled: dict[str, int] = field(default_factory=dict)  # endpoint → until (ms)
    throttled_ever: bool = False
    sent_total: int = 0
    requests_total: int = 0
    paused_url: bool = False


class Held(Protocol):
    """Messages held in memory because the outbox could not be written (``Delivery``)."""

    @property
    def held(self) -> int:
        """How many messages are held."""
        ...

    def take_held(self, limit: int) -> list[Message]:
        """Remove and return up to `limit` held messages, oldest first."""
        ...

    def return_held(self, messages: list[Message]) -> None:
        """Put back, in front and in order, messages that could not be sent."""
        ...


class Sender:
    """Drain an outbox into a sink on a daemon thread; see the module docstring.

    ``start()`` runs the thread; ``wake()``, ``flush()``, ``stop()`` and
    ``status()`` may be called from any thread. Setting `stop_event` (or
    calling ``stop()``) ends the thread within a second, after the request in
    flight; ``flush()`` still drains afterwards, in the caller's thread.
    """

    def __init__(
        self,
        outbox: Outbox,
        sink: Sink,
        *,
        backoff: Backoff | None = None,
        batch_items: int = 1000,
        lease_limit: int = 1000,
        rand: Random | None = None,
        clock: Callable[[], int] = now_ms,
        stop_event: threading.Event | None = None,
        limiter: RateLimiter | None = None,
        url: str = "",
        held: Held | None = None,
        linger_s: float = 0.0,
    ) -> None:
        self._outbox = outbox
        self._url = url  # the configured server URL, named in the wrong-URL hint
        self._held = held  # messages the outbox could not take (a full disk), in memory
        self._sink = sink
        self._backoff = backoff or Backoff()
        self._batch_items = batch_items
        self._lease_limit = lease_limit
        self._clock = clock
        self._gates = Gates(self._backoff, rand or Random(), clock)  # noqa: S311 (jitter)
        self._stop = stop_event or threading.Event()
        self._limiter = limiter or RateLimiter()
        self._wake = threading.Event()
        self._nap = threading.Event()  # never set: flush()'s waits when the thread is gone
        self._inline = False  # flush() is draining in the caller's thread
        self._progress = threading.Condition()
        self._lock = threading.Lock()  # guards the counters status() reads
        self._last_success_ms: int | None = None
        self._last_error: str | None = None
        self._last_error_ms: int | None = None
        self._sent_total = 0
        self._requests_total = 0
        self._thread: threading.Thread | None = None
        self._unsettled: list[int] = []  # leased rows a failed outbox write left leased
        self._not_found: set[str] = set()  # endpoints answering 404 since the last success
        self._linger_s = linger_s
        self._hurry = threading.Event()  # stop() or flush(): no lingering
        self._leased = 0  # rows the last pass leased

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender thread."""
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Say that a put happened: end an idle wait (a back-off wait is not cut short)."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the thread after the request in flight; return whether it ended in time."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _only_throttled_past(self, deadline_ms: int) -> bool:
        """Whether all that is left waits on throttles that end after `deadline_ms`.

        A flush cannot end a throttle (Comet asked for the wait): waiting it out to the
        deadline only holds the stop up.
        """
        past = [ep for ep, until in self._gates.throttled().items() if until > deadline_ms]
        if not past:
            return False
        stats = self._outbox.stats()
        return stats.leased == 0 and self._outbox.next_ready_ms(exclude=past) is None

    def flush(self, timeout_s: float, *, fresh: bool = False) -> bool:
        """Send until nothing is waiting or `timeout_s` passed; return True if the outbox drained.

        Runs in the caller's thread when the sender thread is not running (or
        its stop_event is already set), so the daemon can flush after a signal.
        `fresh` (the stop flush) first ends every back-off for one more try.
        """
        deadline_ms = self._gates.after(timeout_s)
        if fresh:
            # A back-off earned before Comet came back must not keep its data past the stop
            # (in a sidecar's emptyDir, kept means lost). A throttle stays (Comet asked for
            # it) and so does a pause (the key or the URL: retrying cannot end it).
            self._reopen(answered=False)
        thread = self._thread
        if thread is None or not thread.is_alive() or self._stop.is_set():
            if thread is not None:
                thread.join(max(0.0, timeout_s))
                if thread.is_alive():  # still inside a request: two drainers would double-send
                    return False
            return self._flush_inline(deadline_ms)
        self._hurry.set()
        self.wake()
        try:
            with self._progress:
                while self._outbox.pending():
                    left_ms = deadline_ms - self._clock()
                    if left_ms <= 0 or self._gates.paused or not thread.is_alive():
                        return False
                    if self._only_throttled_past(deadline_ms):
                        return False  # Comet asked for the wait: kept for the next start
                    self._progress.wait(min(0.1, left_ms / 1000))
            return True
        finally:
            if not self._stop.is_set():
                self._hurry.clear()

    def recovered(self) -> None:
        """Say Comet answered another request (the keep-alive): an outage's back-offs end now."""
        self._reopen(answered=True)

    def _reopen(self, *, answered: bool) -> None:
        if self._gates.reopen(answered=answered):
            self._reopen_rows()
            self._wake.set()

    def _reopen_rows(self) -> None:
        """Make the rows that wait out an ended back-off leasable now (not those of a throttle,
        nor of an endpoint still backing off on its own)."""
        try:
            self._outbox.reopen(exclude=self._gates.closed())
        except OutboxError as exc:  # a full disk: they go when their own wait ends
            self._note_error(str(exc))

    def _flush_inline(self, deadline_ms: int) -> bool:
        self._inline = True
        try:
            while self._outbox.pending():
                if self._clock() >= deadline_ms or self._gates.paused:
                    return False
                self._turn(deadline_ms)
            return True
        finally:
            self._inline = False

    def status(self) -> SenderStatus:
        """Return a snapshot of the sender's counters and waits."""
        with self._lock:
            return SenderStatus(
                last_success_ms=self._last_success_ms,
                last_error=self._last_error,
                last_error_ms=self._last_error_ms,
                paused_auth=self._gates.paused_auth,
                throttled=self._gates.throttled(),
                throttled_ever=self._gates.throttled_ever,
                sent_total=self._sent_total,
                requests_total=self._requests_total,
                paused_url=self._gates.paused_url,
            )

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn(None)
            except OutboxError as exc:
                self._note_error(str(exc))
                if (repeats := self._limiter.check("outbox")) is not None:
                    log.error("sender.outbox_failed", error=str(exc), repeats=repeats)
                self._stop.wait(self._backoff.wait_max)
            except Exception:  # a bug: keep the thread (and the data) alive, loudly
                if self._limiter.check("crash") is not None:
                    log.exception("sender.crashed")
                self._stop.wait(self._backoff.wait_max)
            with self._progress:
                self._progress.notify_all()
            self._linger()

    def _linger(self) -> None:
        """After a pass that emptied what was ready, let new messages gather for `linger_s`.

        At 1 s sampling every sample's metric batch would be its own request; gathered,
        they merge into one (each item keeps its own timestamp). Not after a full lease
        (a backlog drains at full speed), and stop() or flush() cut it short.
        """
        if self._linger_s > 0 and 0 < self._leased < self._lease_limit:
            self._hurry.wait(self._linger_s)

    def _turn(self, deadline_ms: int | None) -> None:
        """Send one leased batch, or wait until something may be sent."""
        self._wake.clear()
        if self._unsettled:
            self._outbox.release(self._unsettled)  # raises again while the disk is still full
            self._unsettled.clear()
        every_until = self._gates.all_closed_until()
        if every_until is not None:
            self._wait(every_until, deadline_ms, wakeable=False)
            return
        for endpoint in self._gates.ended_incidents():
            log.info("outbox.throttle_ended", endpoint=endpoint)
        closed = self._gates.closed()
        batch = self._outbox.lease(self._lease_limit, exclude=closed)
        self._leased = len(batch)
        if batch:
            try:
                self._deliver(batch, deadline_ms)
            except OutboxError:
                # An ack or retry that could not be written (disk full) leaves rows leased:
                # never leased again by this process, overtaken by newer rows of their
                # endpoint. Put them back before the next lease (only_leased: settled rows stay).
                self._unsettled.extend(s.id for s in batch)
                raise
            return
        if self._held is not None and self._held.held and not closed and not self._outbox.pending():
            held = self._held.take_held(self._lease_limit)
            if held:
                self._deliver_held(held)
                return
        moments = [self._gates.reopens_ms(ep) for ep in closed]
        next_ms = self._outbox.next_ready_ms(exclude=closed)
        if next_ms is not None:
            moments.append(next_ms)
        self._wait(min(moments) if moments else None, deadline_ms, wakeable=True)

    def _wait(self, until_ms: int | None, deadline_ms: int | None, *, wakeable: bool) -> None:
        now = self._clock()
        target = until_ms if until_ms is not None else now + int(IDLE_WAIT_S * 1000)
        if deadline_ms is not None:
            target = min(target, deadline_ms)
        wait_s = max(0, target - now) / 1000
        # Never longer than a second: a success elsewhere (the keep-alive) may end the wait.
        wait_s = min(wait_s, IDLE_WAIT_S)
        if self._inline:
            self._nap.wait(wait_s)
        elif wakeable:
            self._wake.wait(wait_s)
        else:
            self._stop.wait(wait_s)

    # -- one batch -------------------------------------------------------------------------

    def _deliver(self, batch: list[Stored], deadline_ms: int | None) -> None:
        """Send `batch` as merged groups; settle every row (ack, retry, reject or release)."""
        started = time.monotonic()
        oldest_ms = min(s.message.created_ms for s in batch)
        groups = deque(self._group(batch))
        blocked: set[str] = set()
        sent = requests = 0
        recovered = False
        while groups:
            group = groups.popleft()
            endpoint = group[0].message.endpoint
            if self._cut_short(deadline_ms) or ALL in blocked:
                self._outbox.release(_ids([group, *groups]))  # untried: no attempt counted
                break
            if endpoint in blocked:
                self._outbox.release(_ids([group]))
                continue
            requests += 1
            try:
                self._send(group)
            except ApiError as exc:
                if _splits(exc) and len(group) > 1:
                    groups.extendleft([s] for s in reversed(group))  # find the culprit alone
                    continue
                blocked |= self._failed(group, exc)
            except AgentError as exc:  # the client cannot even build it: no path, no key
                self._reject(group, str(exc))
            except Exception as exc:  # a sink bug must not kill the thread nor lose the data
                if self._limiter.check(f"crash:{endpoint}") is not None:
                    log.exception("sender.crashed", endpoint=endpoint)
                blocked |= self._defer(group, endpoint, f"{type(exc).__name__}: {exc}", None)
            else:
                sent += len(group)
                recovered |= self._succeeded(group)
        self._log_pass(sent, requests, oldest_ms, started, recovered)

    def _deliver_held(self, held: list[Message]) -> None:
        """Send messages straight from memory (the disk is full, Comet may not be): what is
        not sent goes back to memory, in order; no outbox write on the way."""
        assert self._held is not None  # noqa: S101 - only called with a held source
        groups = deque(self._group([Stored(-1, msg) for msg in held]))
        sent = 0
        while groups:
            group = groups.popleft()
            if self._cut_short(None):
                groups.appendleft(group)
                break
            endpoint = group[0].message.endpoint
            try:
                self._send(group)
            except ApiError as exc:
                if exc.retryable or isinstance(exc, AuthError) or _transient(exc):
                    self._note_error(str(exc))
                    where = ALL if isinstance(exc, errors.TransportError | AuthError) else endpoint
                    self._gates.defer(where, exc.retry_after_s)
                    groups.appendleft(group)
                    break
                # Refused for good, and no disk to keep a dead letter on: said, then let go.
                self._note_error(str(exc))
                log.error("outbox.rejected", endpoint=endpoint, count=len(group), error=str(exc))
            except AgentError as exc:  # the client cannot build it: no disk for a dead letter
                self._note_error(str(exc))
                log.error("outbox.rejected", endpoint=endpoint, count=len(group), error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a sink bug: keep the data, try later
                self._note_error(f"{type(exc).__name__}: {exc}")
                self._gates.defer(endpoint, None)
                groups.appendleft(group)
                break
            else:
                sent += len(group)
                self._not_found.clear()
                with self._lock:
                    self._sent_total += len(group)
                    self._last_success_ms = self._clock()
                self._gates.succeeded(endpoint)
        if groups:
            self._held.return_held([s.message for group in groups for s in group])
        if sent:
            log.info("outbox.sent_from_memory", count=sent)

    def _cut_short(self, deadline_ms: int | None) -> bool:
        if deadline_ms is not None and self._clock() >= deadline_ms:
            return True  # flush()'s deadline: what is left stays for the next start
        return self._stop.is_set() and not self._inline

    def _group(self, batch: list[Stored]) -> list[list[Stored]]:
        """Group mergeable messages with equal merge keys (in order, up to batch_items items)."""
        groups: list[list[Stored]] = []
        open_groups: dict[object, tuple[list[Stored], int]] = {}
        for stored in batch:
            msg = stored.message
            key = msg.merge_key()
            if key is None:
                groups.append([stored])
                continue
            items = msg.body.get(MERGEABLE[msg.endpoint])
            count = len(items) if isinstance(items, list) else 0
            current = open_groups.get(key)
            if current is not None and current[1] + count <= self._batch_items:
                current[0].append(stored)
                open_groups[key] = (current[0], current[1] + count)
            else:
                fresh = [stored]
                groups.append(fresh)
                open_groups[key] = (fresh, count)
        return groups

    def _send(self, group: list[Stored]) -> None:
        first = group[0].message
        body = merge([s.message for s in group]) if len(group) > 1 else first.body
        with self._lock:
            self._requests_total += 1
        self._sink.send(first.endpoint, first.experiment_key, body, first.attachment)

    # -- outcomes --------------------------------------------------------------------------

    def _succeeded(self, group: list[Stored]) -> bool:
        """Ack `group`; return whether this ended a failure that had been logged."""
        endpoint = group[0].message.endpoint
        self._outbox.ack(_ids([group]))
        with self._lock:
            self._sent_total += len(group)
            self._last_success_ms = self._clock()
        self._not_found.clear()
        closed = self._gates.closed()
        every = self._gates.all_closed_until() is not None
        was_paused = self._gates.succeeded(endpoint)
        if every or was_paused or closed - self._gates.closed():
            # Rows of the other endpoints wait out their back-off in the outbox too.
            self._reopen_rows()
        if was_paused:
            self._limiter.reset("auth")
            log.info("sender.auth_recovered")
        ended = [self._limiter.reset(f"deferred:{where}") for where in (endpoint, ALL)]
        return any(ended) or was_paused

    def _failed(self, group: list[Stored], exc: ApiError) -> set[str]:
        """Settle a group Comet did not take; return what is blocked for the rest of the pass."""
        endpoint = group[0].message.endpoint
        error = str(exc)
        if exc.status == 404 and not exc.retryable:
            self._not_found.add(endpoint)
            if len(self._not_found) >= WRONG_URL_ENDPOINTS:
                return self._pause_url(group, error)
        if _transient(exc) and max(s.attempts for s in group) + 1 < TRANSIENT_ATTEMPTS:
            return self._defer(group, endpoint, error, exc.retry_after_s)
        if not exc.retryable and not isinstance(exc, AuthError):
            self._reject(group, error)
            return set()  # nothing blocked: the next message may be fine
        self._note_error(error)
        ids = _ids([group])
        if isinstance(exc, AuthError):
            self._outbox.retry_later(ids, self._gates.pause_auth(), error)
            if (repeats := self._limiter.check("auth")) is not None:
                # Once (then hourly): the fix is in the error text; nothing is dropped meanwhile.
                log.error(
                    "sender.auth_failed",
                    error=error,
                    retry_in_s=self._backoff.wait_max,
                    repeats=repeats,
                )
            return {ALL}
        if isinstance(exc, ThrottledError):
            until_ms, wait_s = self._gates.throttle(endpoint, exc.retry_after_s)
            self._outbox.retry_later(ids, until_ms, error)
            if (repeats := self._limiter.check(f"throttled:{endpoint}")) is not None:
                log.warning(
                    "outbox.throttled", endpoint=endpoint, wait_s=round(wait_s, 2), repeats=repeats
                )
            return {endpoint}
        return self._defer(
            group,
            ALL if isinstance(exc, errors.TransportError) else endpoint,
            error,
            exc.retry_after_s,
        )

    def _pause_url(self, group: list[Stored], error: str) -> set[str]:
        """Every endpoint answers 404: pause all, counting no try (a fixed URL sends it all)."""
        self._note_error(error)
        self._outbox.retry_later(_ids([group]), self._gates.pause_url(), error, count=False)
        if (repeats := self._limiter.check("url")) is not None:
            # Once (then hourly), like a rejected key: the fix is in the configuration.
            log.error(
                "sender.url_wrong",
                error=error,
                url=_shown(self._url) or None,
                fix=url_fix(self._url),
                retry_in_s=self._backoff.wait_max,
                repeats=repeats,
            )
        return {ALL}

    def _defer(
        self, group: list[Stored], where: str, error: str, retry_after_s: float | None
    ) -> set[str]:
        """Back off `where` (an endpoint, or ALL for the network) and put `group` back."""
        self._note_error(error)
        until_ms, wait_s = self._gates.defer(where, retry_after_s)
        self._outbox.retry_later(_ids([group]), until_ms, error)
        if (repeats := self._limiter.check(f"deferred:{where}")) is not None:
            log.warning(
                "outbox.deferred",
                endpoint=group[0].message.endpoint,
                error=error,
                wait_s=round(wait_s, 2),
                repeats=repeats,
            )
        return {where}

    def _reject(self, group: list[Stored], error: str) -> None:
        endpoint = group[0].message.endpoint
        self._note_error(error)
        self._outbox.reject(_ids([group]), error)
        if (repeats := self._limiter.check(f"rejected:{endpoint}")) is not None:
            log.error(
                "outbox.rejected", endpoint=endpoint, count=len(group), error=error, repeats=repeats
            )

    def _note_error(self, error: str) -> None:
        with self._lock:
            self._last_error = error
            self._last_error_ms = self._clock()

    def _log_pass(
        self, sent: int, requests: int, oldest_ms: int, started: float, recovered: bool
    ) -> None:
        """The one canonical line per drain pass: INFO when it ended a failure, else DEBUG."""
        if not requests:
            return
        emit = log.info if recovered else log.debug
        emit(
            "outbox.sent",
            count=sent,
            requests=requests,
            oldest_age_s=round((self._clock() - oldest_ms) / 1000, 1),
            duration_ms=round((time.monotonic() - started) * 1000),
        )


def _transient(exc: ApiError) -> bool:
    """A refusal that may pass: 404 or 413 (never an auth or a throttle answer)."""
    return not exc.retryable and exc.status in TRANSIENT_STATUSES


def _splits(exc: ApiError) -> bool:
    """Whether a merged batch Comet refused is worth sending message by message."""
    # Not a 404: when the URL or the experiment is wrong, every part is refused alike.
    return not exc.retryable and not isinstance(exc, AuthError) and exc.status != 404


def url_suspect(url: str) -> str | None:
    """Return the fix for a server URL without /clientlib/ (every call would 404), else None."""
    return None if "/clientlib" in urlsplit(url).path else url_fix(url)


def url_fix(url: str) -> str:
    """How to fix a server URL that answers 404 everywhere."""
    base = "set COMET_URL_OVERRIDE (or [comet] url_override) to the clientlib base of your server"
    url = _shown(url)
    if url and "/clientlib" not in url:
        return f"{base}: {url} has no /clientlib/; try {url.rstrip('/')}/clientlib/"
    return base + ", like https://www.comet.com/clientlib/"


def _shown(url: str) -> str:
    """`url` without user, password, query or fragment: fit for a log line."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _ids(groups: Iterable[list[Stored]]) -> list[int]:
    return [s.id for group in groups for s in group]
