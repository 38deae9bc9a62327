"""Fuzzing the keep-alive answer: any JSON value folded into the intervals keeps them sane.

The property: after ``IntervalPolicy.apply(answer)`` with any decoded JSON,
every interval is finite and positive; one the server set lies within
``[min_interval_s, max_interval_s]``; a field holding a positive finite number
is applied exactly (``ms / 1000`` clamped to the bounds) and reported in
``clamped`` when the clamp changed it; any other value of a known field is
reported in ``ignored`` and the previous interval holds; a missing field
changes nothing and is not reported; the user's explicit intervals and
``follow_server = false`` are never overridden.
"""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from agent.config import Settings
from agent.lifecycle.keepalive import IntervalPolicy
from tests.fuzzing import fuzz

FIELDS = {
    "beat": ("isAliveBeatDurationMillis", "is_alive_beat_duration_millis"),
    "cpu": ("cpuMonitorIntervalMillis", "cpu_monitor_interval_millis"),
    "gpu": ("gpuMonitorIntervalMillis", "gpu_monitor_interval_millis"),
}
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 999, 10**400, -(10**400), 2**63, 86_400_000]),
    st.floats(),
    st.text(max_size=10),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELD_VALUES = st.one_of(JSON_SCALARS, JSON, st.floats(min_value=1e-320, max_value=1e12))
ANSWERS = st.one_of(
    st.dictionaries(
        st.sampled_from([n for pair in FIELDS.values() for n in pair]) | st.text(max_size=8),
        FIELD_VALUES,
        max_size=6,
    ),
    JSON,
)


@st.composite
def policies(draw: st.DrawFn) -> Settings:
    """Settings with random bounds (lo <= hi) and random user choices."""
    lo = draw(st.floats(min_value=0.1, max_value=3600))
    hi = draw(st.floats(min_value=max(lo, 1.0), max_value=86400))
    explicit = draw(st.sets(st.sampled_from(["cpu_interval_s", "gpu_interval_s"])))
    return Settings(
        min_interval_s=lo,
        max_interval_s=hi,
        follow_server=draw(st.booleans()),
        cpu_interval_s=draw(st.floats(min_value=1, max_value=3600)),
        gpu_interval_s=draw(st.floats(min_value=1, max_value=3600)),
        explicit=frozenset(explicit),
    )


def _valid_ms(raw: object) -> bool:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return False
    try:
        return math.isfinite(raw / 1000) and raw > 0
    except OverflowError:  # an integer past the float range is not a number we weigh
        return False


@fuzz(300)
@given(settings=policies(), answers=st.lists(ANSWERS, min_size=1, max_size=4))
@example(settings=Settings(), answers=[{"cpuMonitorIntervalMillis": 10**400}])
@example(settings=Settings(), answers=[{"isAliveBeatDurationMillis": 5e-324}])
def test_any_answer_keeps_intervals_sane(settings: Settings, answers: list[object]) -> None:
    """Every answer: intervals finite, positive, server values within bounds, all reported."""
    policy = IntervalPolicy(settings)
    lo, hi = settings.min_interval_s, settings.max_interval_s
    for answer in answers:
        before = policy.current
        change = policy.apply(answer)
        now = policy.current
        ignored, clamped = dict(change.ignored), {f: (a, b) for f, a, b in change.clamped}
        expected_reports = 0
        for kind, names in FIELDS.items():
            old, new = getattr(before, f"{kind}_s"), getattr(now, f"{kind}_s")
            source = getattr(now, f"{kind}_source")
            assert math.isfinite(new) and new > 0
            if source.startswith("server"):
                assert lo <= new <= hi
            frozen = kind != "beat" and (
                not settings.follow_server or f"{kind}_interval_s" in settings.explicit
            )
            present = [n for n in names if isinstance(answer, dict) and n in answer]
            if frozen or not present:
                assert new == old and not any(n in ignored or n in clamped for n in names)
                continue
            name, raw = present[0], answer[present[0]]  # type: ignore[index]  # camelCase first
            expected_reports += 1
            if _valid_ms(raw):
                asked = raw / 1000
                assert new == min(max(asked, lo), hi)
                assert source == ("server" if new == asked else "server-clamped")
                assert (name in clamped) is (new != asked)
                if new != asked:
                    assert clamped[name] == (asked, new)
                else:
                    expected_reports -= 1
            else:
                assert new == old and source == getattr(before, f"{kind}_source")
                assert name in ignored and ignored[name] is raw
        if not isinstance(answer, dict):
            assert change.ignored[-1] == ("answer", answer)
            expected_reports += 1
        assert len(change.ignored) + len(change.clamped) == expected_reports


def test_an_integer_past_the_float_range_is_ignored() -> None:
    """A 400-digit interval is ignored (the last good value holds), not an OverflowError."""
    policy = IntervalPolicy(Settings())
    change = policy.apply({"cpuMonitorIntervalMillis": 10**400, "gpuMonitorIntervalMillis": 5000})
    assert (policy.current.cpu_s, policy.current.gpu_s) == (30.0, 5.0)
    assert change.ignored == (("cpuMonitorIntervalMillis", 10**400),)
