"""Backoff: exponential, jittered, capped; Retry-After obeyed up to its own cap."""

from __future__ import annotations

from random import Random

import pytest

from agent.config import Settings
from agent.delivery.backoff import Backoff


def test_grows_exponentially_with_jitter_in_range() -> None:
    """Attempt n waits wait_initial * 2**(n-1) plus at most wait_jitter."""
    backoff = Backoff(wait_initial=0.5, wait_max=1000.0, wait_jitter=1.0)
    rand = Random(0)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0)]:
        wait = backoff.delay(attempt, None, rand)
        assert base <= wait <= base + 1.0


def test_same_seed_same_waits() -> None:
    """Random(0) makes the jitter reproducible, so tests are deterministic."""
    backoff = Backoff()
    first = [backoff.delay(n, None, Random(0)) for n in range(1, 6)]
    again = [backoff.delay(n, None, Random(0)) for n in range(1, 6)]
    assert first == again


def test_capped_at_wait_max_even_for_huge_attempts() -> None:
    """The 10,000th retry waits wait_max, not an overflowing power of two."""
    backoff = Backoff(wait_max=60.0)
    assert 32.0 <= backoff.delay(7, None, Random(0)) < 33.0  # 0.5 * 2**6, plus jitter
    assert backoff.delay(8, None, Random(0)) == 60.0  # 0.5 * 2**7 = 64: capped
    assert backoff.delay(10_000, None, Random(0)) == 60.0


@pytest.mark.parametrize(("asked", "waited"), [(2.0, 2.0), (0.0, 0.0), (2.5, 2.5), (9999, 600)])
def test_retry_after_is_obeyed_exactly_up_to_the_cap(asked: float, waited: float) -> None:
    """What the server asks for wins over the exponential wait, capped at retry_after_max."""
    assert Backoff().delay(5, asked, Random(0)) == waited


def test_negative_retry_after_is_ignored() -> None:
    """A nonsense negative header falls back to the computed wait."""
    assert 0.5 <= Backoff().delay(1, -3.0, Random(0)) <= 1.5


def test_from_settings_takes_backoff_max_s() -> None:
    """[outbox] backoff_max_s becomes wait_max; the rest stays the house default."""
    backoff = Backoff.from_settings(Settings(backoff_max_s=7.0))
    assert backoff == Backoff(wait_max=7.0)
