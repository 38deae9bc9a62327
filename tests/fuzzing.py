"""Settings shared by the property-based tests (tests/test_fuzz_*.py).

Each test names its own budget of examples, sized so the whole fuzz set runs
in well under a minute on two cores. ``COMET_FUZZ_SCALE=20`` multiplies every
budget, for a longer hunt by hand: ``COMET_FUZZ_SCALE=20 pytest tests/test_fuzz_*.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("COMET_FUZZ_SCALE", "1") or 1))


def fuzz(examples: int, *, allow: Sequence[HealthCheck] = (), **kwargs: object) -> settings:
    """Hypothesis settings for `examples` examples (times COMET_FUZZ_SCALE), no deadline.

    No per-example deadline: the machine is shared, and a slow example is not a failure;
    the budget of examples bounds the time instead. `allow` lists further health checks
    to suppress (a function-scoped fixture shared by every example, when that is the point).
    """
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *allow],
        **kwargs,  # type: ignore[arg-type]
    )
