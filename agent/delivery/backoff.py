"""Backoff: how long the sender waits before trying a failed request again.

Parameter names follow stamina; ``Retry-After`` handling follows openai-python
and the segment consumer: when the server says how long to wait it is obeyed
exactly (up to ``retry_after_max``), otherwise the wait grows exponentially with
jitter and a cap. ``agent.api.client.retry_after_s`` parses the headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import Settings


@dataclass(frozen=True)
class Backoff:
    """Jittered, capped exponential backoff (seconds)."""

    wait_initial: float = 0.5
    wait_max: float = 60.0
    wait_jitter: float = 1.0
    wait_exp_base: float = 2.0
    retry_after_max: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        """Return the house backoff with the cap from ``[outbox] backoff_max_s``."""
        return cls(wait_max=settings.backoff_max_s)

    def delay(self, attempt: int, retry_after: float | None, rand: Random) -> float:
        """Return the seconds to wait before retry `attempt` (1-based).

        A non-negative `retry_after` (what the server asked for) wins, capped at
        ``retry_after_max`` so a bogus header cannot park data for days.
        """
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.retry_after_max)
        # Cap the exponent: 2**1100 overflows a float long after the wait hit wait_max.
        step = self.wait_initial * self.wait_exp_base ** min(max(attempt, 1) - 1, 64)
        return min(self.wait_max, step + rand.uniform(0, self.wait_jitter))
