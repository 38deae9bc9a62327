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


def test_a_keep_alive_ends_the_outages_back_offs_and_pause_but_not_throttles() -> None:
    """Comet answered a keep-alive: the back-offs earned in the outage end everywhere, the
    auth pause too; a throttle the server asked for stays."""
    clock = Clock()
    g = gates(clock)
    for _ in range(4):
        g.defer("add-cpu-metrics", None)
    g.defer(ALL, None)
    g.throttle("log-output", 30)
    g.pause_auth()
    assert g.reopen(answered=True)
    assert g.closed() == {"log-output"}
    assert g.all_closed_until() is None and not g.paused_auth
    assert not g.reopen(answered=True)  # nothing left to reopen


def test_a_streak_that_began_while_others_succeeded_keeps_its_back_off() -> None:
    """One endpoint failing while the rest succeed is its own trouble: later successes
    elsewhere (or keep-alives) do not cut its back-off short (no retry after every one)."""
    clock = Clock()
    g = gates(clock)
    g.succeeded("add-ram-metrics")  # a success at T0
    clock.now += 1000
    g.defer("add-cpu-metrics", None)
    clock.now += 100
    g.succeeded("add-ram-metrics")  # the first success since it began: maybe an outage's end
    assert g.closed() == set()
    clock.now += 100
    assert g.defer("add-cpu-metrics", None)[1] == 2.0  # the streak goes on, so does its count
    clock.now += 100
    g.succeeded("add-ram-metrics")  # it began before the last success: not an outage
    assert not g.reopen(answered=True)
    assert g.closed() == {"add-cpu-metrics"}
    assert not g.succeeded("add-cpu-metrics")  # its own success ends it
    assert g.closed() == set()
    assert g.defer("add-cpu-metrics", None)[1] == 1.0


def test_the_last_try_ends_every_back_off_but_not_the_pause_nor_is_a_success() -> None:
    """reopen(answered=False): an endpoint's own back-off ends too (one more try before the
    exit) but not the auth pause; and it is no success, so an outage goes on being one."""
    clock = Clock()
    g = gates(clock)
    g.succeeded("add-ram-metrics")
    clock.now += 1000
    g.defer("add-cpu-metrics", None)
    clock.now += 100
    g.succeeded("add-ram-metrics")
    clock.now += 100
    g.defer("add-cpu-metrics", None)  # its own trouble now
    g.pause_auth()
    assert g.reopen(answered=False)
    assert g.closed() == set()
    assert g.paused_auth and g.all_closed_until() == clock.now + 8_001
    assert g.defer("add-cpu-metrics", None)[1] == 4.0  # the streak and its count go on

    later = Clock()
    h = gates(later)
    h.defer("add-load-metrics", None)  # an outage: no success since it began
    later.now += 100
    assert h.reopen(answered=False)
    later.now += 100
    h.defer("add-load-metrics", None)
    later.now += 100
    h.succeeded("add-ram-metrics")  # Comet is back: the flush's try was not a success
    assert h.closed() == set()


def test_a_keep_alive_ends_a_pause_whose_wait_is_over() -> None:
    """The auth pause's wait passed with no success yet: a keep-alive's success still ends
    it (a flush at the stop gives up at once while it is on)."""
    clock = Clock()
    g = gates(clock)
    g.pause_auth()
    clock.now += 9_000
    assert g.all_closed_until() is None and g.paused
    assert g.reopen(answered=True)
    assert not g.paused
