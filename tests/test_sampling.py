"""Sampling: one sample of a group, failures reported once, the final sample not a duplicate."""

from __future__ import annotations

from collections.abc import Sequence

from agent import log
from agent.collect.base import HealthEvent, Roots, Sample
from agent.config import Settings
from agent.errors import CollectorError
from agent.lifecycle.samples import Channels
from agent.lifecycle.sampling import Sampling
from agent.message import Message

KEY = "k" * 32


class _Sampler:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.calls = 0

    def collect(self) -> Sample:
        self.calls += 1
        if self.fail:
            raise CollectorError(f"{self.name}: cannot read /proc/x")
        event = HealthEvent("gpu.xid", "GPU 0: XID 79", 1_700_000_000_000)
        return Sample(
            1_700_000_000_000,
            {"sys.x": 1},
            events=[event] if self.calls == 1 else [],
            unsupported=frozenset({"gpu.0.fan"}),
        )

    def close(self) -> None:
        """Nothing held."""


def _sampling(*samplers: _Sampler) -> Sampling:
    sampling = Sampling(Settings(), Roots(), log.RateLimiter())
    sampling.groups["cpu"] = list(samplers)
    return sampling


def test_a_failing_sampler_does_not_stop_the_others() -> None:
    """One sampler raising: the others' messages are written, its failure counted."""
    good, bad = _Sampler("good"), _Sampler("bad", fail=True)
    sampling = _sampling(bad, good)
    written: list[Message] = []
    lines: list[str] = []

    def put(messages: Sequence[Message]) -> bool:
        written.extend(messages)
        return True

    sampling.sample("cpu", KEY, Channels(), put, lines.append)
    assert [m.endpoint for m in written] == ["log-metric-batch", "log-other"]
    assert written[1].body["key"] == "comet_agent.gpu.xid"
    assert lines == ["[comet-agent] GPU 0: XID 79\n"]
    assert sampling.collectors()["bad"]["failures"] == 1
    assert sampling.collectors()["good"]["last_ok_ms"] == 1_700_000_000_000


def test_the_final_sample_is_skipped_right_after_a_scheduled_one() -> None:
    """At stop, a group sampled a moment ago is not sampled again (a millisecond window)."""
    sampler = _Sampler("cpu")
    sampling = _sampling(sampler)
    sampling.sample("cpu", KEY, Channels(), lambda _m: True)
    sampling.sample("cpu", KEY, Channels(), lambda _m: True, final=True)
    assert sampler.calls == 1
    fresh = _sampling(sampler)
    fresh.sample("cpu", KEY, Channels(), lambda _m: True, final=True)  # never sampled: taken
    assert sampler.calls == 2


def test_take_reads_each_sampler_once_and_leaves_the_reporting_to_its_caller() -> None:
    """`take` (what `comet-agent sample` prints): a sample or the error, in order; nothing
    counted, so a later scheduled failure is still the first one reported."""
    good, bad = _Sampler("good"), _Sampler("bad", fail=True)
    sampling = _sampling(bad, good)
    taken = sampling.take("cpu")
    assert [name for name, _ in taken] == ["bad", "good"]
    assert isinstance(taken[0][1], CollectorError) and "cannot read /proc/x" in str(taken[0][1])
    assert isinstance(taken[1][1], Sample) and taken[1][1].metrics == {"sys.x": 1}
    assert sampling.collectors() == {}
    sampling.sample("cpu", KEY, Channels(), lambda _m: True)
    assert sampling.collectors()["bad"]["failures"] == 1
