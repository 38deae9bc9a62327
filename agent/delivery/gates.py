"""Gates: when each endpoint (or every endpoint) may send again after a failure.

Three kinds of wait, kept apart because they end differently:

* back-off of one endpoint (a retryable HTTP error) or of all (``ALL``: no
  answer at all), growing with consecutive failures, reset by a success;
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
            gate = self._gates.setdefault(where, _Gate())
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
            until_ms = self.after(self._backoff.wait_max)
            self._gates[ALL] = _Gate(until_ms, self._gates.get(ALL, _Gate()).failures + 1)
            self.paused_auth = True
        return until_ms

    def pause_url(self) -> int:
        """Close every endpoint for ``wait_max``: the URL is wrong (404s); return until."""
        with self._lock:
            until_ms = self.after(self._backoff.wait_max)
            self._gates[ALL] = _Gate(until_ms, self._gates.get(ALL, _Gate()).failures + 1)
            self.paused_url = True
        return until_ms

    @property
    def paused(self) -> bool:
        """Whether sending waits for a fix (the key or the URL) rather than for time."""
        return self.paused_auth or self.paused_url

    def succeeded(self, endpoint: str) -> bool:
        """Reset every back-off (Comet answers again); return whether auth had been paused."""
        # Not only `endpoint`'s: an outage closed every gate, and one 200 ends it for all. A
        # typed endpoint left waiting out its 60 s back-off would reach the stop flush unsent.
        with self._lock:
            self._gates.clear()
            was_paused, self.paused_auth = self.paused_auth, False
            self.paused_url = False
        return was_paused

    def reopen(self, *, auth: bool = True) -> bool:
        """End every back-off (and the pauses, unless not `auth`); return whether one was on.

        Throttle incidents stay: Comet asked for them and nothing but their time ends them.
        """
        with self._lock:
            closed = bool(self._gates)
            if auth or not (self.paused_auth or self.paused_url):
                self._gates.clear()
                self.paused_auth = self.paused_url = False
            else:  # keep the pause (ALL) but open the endpoints behind it
                self._gates = {ep: g for ep, g in self._gates.items() if ep == ALL}
        return closed

    def throttled(self) -> dict[str, int]:
        """Return the open throttle incidents: endpoint → until (epoch ms)."""
        now = self._clock()
        with self._lock:
            return {ep: until for ep, until in self._throttled.items() if until > now}
