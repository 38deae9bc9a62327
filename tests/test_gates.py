"""Gates: back-off, throttle incidents and the auth pause, on a hand-driven clock."""

from __future__ import annotations

from random import Random

from agent.delivery.backoff import Backoff
from agent.delivery.gates import ALL, Gates

T0 = 1_700_000_000_000


class Clock:
    """A settable millisecond clock."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def gates(clock: Clock) -> Gates:
    return Gates(Backoff(wait_initial=1.0, wait_max=8.0, wait_jitter=0.0), Random(0), clock)


def test_back_off_doubles_per_failure_and_success_resets() -> None:
    """1, 2, 4, 8, 8 s for consecutive failures of one endpoint; a success starts over."""
    clock = Clock()
    g = gates(clock)
    waits = [g.defer("add-cpu-metrics", None)[1] for _ in range(5)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert g.closed() == {"add-cpu-metrics"}
    assert g.all_closed_until() is None  # one endpoint's trouble is not everyone's
    assert not g.succeeded("add-cpu-metrics")
    assert g.closed() == set()
    assert g.defer("add-cpu-metrics", None)[1] == 1.0


def test_retry_after_is_exact_and_never_a_millisecond_early() -> None:
    """A 2.5 s Retry-After closes the endpoint until 2.5 s from now, rounded up."""
    clock = Clock()
    g = gates(clock)
    until, wait = g.defer("log-other", 2.5)
    assert (until, wait) == (T0 + 2_501, 2.5)
    clock.now = T0 + 2_500
    assert g.closed() == {"log-other"}
    clock.now = T0 + 2_501
    assert g.closed() == set()


def test_throttle_incident_defaults_to_60_s_and_is_remembered() -> None:
    """A 429 without a header parks its endpoint 60 s; throttled_ever stays set after it ends."""
    clock = Clock()
    g = gates(clock)
    assert g.throttle("log-metric-batch", None) == (T0 + 60_001, 60.0)
    assert g.throttled() == {"log-metric-batch": T0 + 60_001}
    assert g.reopens_ms("log-metric-batch") == T0 + 60_001
    clock.now = T0 + 60_001
    assert g.ended_incidents() == ["log-metric-batch"]
    assert g.throttled() == {} and g.closed() == set()
    assert g.throttled_ever


def test_auth_pause_closes_everything_until_a_success() -> None:
    """After a 401 every endpoint waits wait_max; the next success clears the pause."""
    clock = Clock()
    g = gates(clock)
    assert g.pause_auth() == T0 + 8_001
    assert g.paused_auth and g.all_closed_until() == T0 + 8_001
    clock.now = T0 + 8_001
    assert g.all_closed_until() is None
    assert g.succeeded("log-other")  # it had been paused
    assert not g.paused_auth


def test_transport_back_off_is_shared() -> None:
    """ALL backs off every endpoint at once, and any success reopens it."""
    clock = Clock()
    g = gates(clock)
    g.defer(ALL, None)
    assert g.all_closed_until() == T0 + 1_001
    g.succeeded("add-ram-metrics")
    assert g.all_closed_until() is None
