"""Gates: when each endpoint (or every endpoint) may send again after a failure.

Three kinds of wait, kept apart because they end differently:

* back-off of one endpoint (a retryable HTTP error) or of all (``ALL``: no
  answer at all), growing with consecutive failures, reset by its own success.
  A success elsewhere (a keep-alive's too) ends it only when its streak of
  failures began after the last success: then the server was down for all,
  and is back. A streak that began while others succeeded is the endpoint's
  own trouble and keeps its back-off (no retry after every success elsewhere);
* a throttle *incident* of one endpoint (wire §4.2): exactly what the 429
  asked, 60 s when it asked nothing; remembered in ``throttled_ever``;
* the auth pause: everything waits ``backoff.wait_max`` after a 401/403.

Pure bookkeeping, no I/O: the sender asks and logs. Thread-safe, so the
daemon can read a snapshot while the sender thread updates it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from random import Random

from agent.delivery.backoff import Backoff

ALL = "*"  # the gate in front of every endpoint: transport errors and the auth pause
THROTTLE_DEFAULT_S = 60.0  # wire §4.2: a 429 without Retry-After-Custom parks the type 60 s


@dataclass
class _Gate:
    until_ms: int = 0
    failures: int = 0  # in a row, for the exponential back-off
    since_ms: int = 0  # when this streak of failures began


class Gates:
    """Back-off gates, throttle incidents and the auth pause, by endpoint name."""

    def __init__(self, backoff: Backoff, rand: Random, clock: Callable[[], int]) -> None:
        self._backoff = backoff
        self._rand = rand
        self._clock = clock
        self._lock = threading.Lock()
        self._gates: dict[str, _Gate] = {}
        self._throttled: dict[str, int] = {}
        self.throttled_ever = False
        self.paused_auth = False
        self.paused_url = False  # every endpoint answered 404: the server URL is wrong
        self._answered_ms = 0  # when Comet last took a request (a keep-alive included)

    def after(self, wait_s: float) -> int:
        """Return the epoch ms `wait_s` from now, rounded up (never a ms early)."""
        # Clocks are truncated to the ms: one more keeps "not before" from ending early.
        return self._clock() + math.ceil(wait_s * 1000) + 1

    def all_closed_until(self) -> int | None:
        """Return when every endpoint may send again, or None if they may now."""
        with self._lock:
            gate = self._gates.get(ALL)
            return gate.until_ms if gate is not None and gate.until_ms > self._clock() else None

    def closed(self) -> set[str]:
        """Return the endpoints backing off or throttled now."""
        now = self._clock()
        with self._lock:
            waiting = {ep for ep, g in self._gates.items() if g.until_ms > now and ep != ALL}
            return waiting | {ep for ep, until in self._throttled.items() if until > now}

    def ended_incidents(self) -> list[str]:
        """Forget and return the throttle incidents whose time has passed."""
        now = self._clock()
        with self._lock:
            ended = [ep for ep, until in self._throttled.items() if until <= now]
            for ep in ended:
                del self._throttled[ep]
        return ended

    def reopens_ms(self, endpoint: str) -> int:
        """Return when `endpoint` may send again."""
        with self._lock:
            gate = self._gates.get(endpoint)
            return max(gate.until_ms if gate else 0, self._throttled.get(endpoint, 0))

    def defer(self, where: str, retry_after_s: float | None) -> tuple[int, float]:
        """Close `where` (an endpoint or ALL) for the next back-off; return (until_ms, wait_s)."""
        with self._lock:
            gate = self._gates.setdefault(where, _Gate(since_ms=self._clock()))
            gate.failures += 1
            wait_s = self._backoff.delay(gate.failures, retry_after_s, self._rand)
            gate.until_ms = self.after(wait_s)
            return gate.until_ms, wait_s

    def throttle(self, endpoint: str, retry_after_s: float | None) -> tuple[int, float]:
        """Open a throttle incident for `endpoint`; return (until_ms, wait_s)."""
        asked = retry_after_s if retry_after_s is not None else THROTTLE_DEFAULT_S
        wait_s = self._backoff.delay(1, asked, self._rand)  # exact, up to retry_after_max
        with self._lock:
            until_ms = self._throttled[endpoint] = self.after(wait_s)
            self.throttled_ever = True
        return until_ms, wait_s

    def pause_auth(self) -> int:
        """Close every endpoint for ``wait_max`` (a rotated key may come back); return until."""
        with self._lock:
            until_ms = self._pause_all()
            self.paused_auth = True
        return until_ms

    def pause_url(self) -> int:
        """Close every endpoint for ``wait_max``: the URL is wrong (404s); return until."""
        with self._lock:
            until_ms = self._pause_all()
            self.paused_url = True
        return until_ms

    def _pause_all(self) -> int:
        """Close ALL for ``wait_max``, as one more failure of its streak (lock held)."""
        until_ms = self.after(self._backoff.wait_max)
        was = self._gates.get(ALL) or _Gate(since_ms=self._clock())
        self._gates[ALL] = _Gate(until_ms, was.failures + 1, was.since_ms)
        return until_ms

    @property
    def paused(self) -> bool:
        """Whether sending waits for a fix (the key or the URL) rather than for time."""
        return self.paused_auth or self.paused_url

    def succeeded(self, endpoint: str) -> bool:
        """Comet took a request of `endpoint`: end its back-off, the shared one and the pauses,
        and the others' back-offs earned in an outage; return whether auth had been paused."""
        with self._lock:
            self._gates.pop(endpoint, None)
            self._gates.pop(ALL, None)
            was_paused, self.paused_auth = self.paused_auth, False
            self.paused_url = False
            self._end_outage()
        return was_paused

    def reopen(self, *, answered: bool) -> bool:
        """End back-offs now; return whether one was on. Throttle incidents stay: Comet asked
        for them and nothing but their time ends them.

        `answered`: Comet took another request (the keep-alive), so the back-offs of an outage
        end, the pauses too if their streak is one. Not `answered` (the stop flush's last try):
        every back-off ends but the pauses (retrying cannot end them), and no success is
        recorded, so an endpoint failing on its own keeps its streak.
        """
        with self._lock:
            if answered:
                return self._end_outage()
            now = self._clock()
            reopened = False
            for where, gate in self._gates.items():
                if gate.until_ms > now and not (where == ALL and self.paused):
                    gate.until_ms = 0  # the failure count stays: a new failure backs off more
                    reopened = True
            return reopened

    def _end_outage(self) -> bool:
        """Record a success now; end the back-offs whose streak began after the one before it
        (lock held); return whether one was on."""
        now, last_ok = self._clock(), self._answered_ms
        self._answered_ms = now
        reopened = False
        for where, gate in self._gates.items():
            if gate.since_ms < last_ok:
                continue  # began while others succeeded: its own trouble
            if gate.until_ms > now:
                gate.until_ms = 0  # the failure count stays: a new failure backs off more
                reopened = True
            if where == ALL and self.paused:  # ended, even if its wait was already over
                self.paused_auth = self.paused_url = False
                reopened = True
        return reopened

    def throttled(self) -> dict[str, int]:
        """Return the open throttle incidents: endpoint → until (epoch ms)."""
        now = self._clock()
        with self._lock:
            return {ep: until for ep, until in self._throttled.items() if until > now}
