"""network.py: bytes per second from the interface counters; resets skip a sample."""

from __future__ import annotations

from collections import namedtuple

import pytest

from agent.collect.base import Sample
from agent.collect.network import NetworkSampler, byte_rates
from agent.errors import CollectorError, NoData

T0 = 1_800_000_000_000
Net = namedtuple("Net", "bytes_sent bytes_recv")  # the fields of psutil's snetio we use


class Clock:
    def __init__(self) -> None:
        self.now_ms = T0

    def __call__(self) -> int:
        return self.now_ms


class Counters:
    """net_io_counters() as psutil answers it, one reading per call."""

    def __init__(self, *readings: Net | OSError | None) -> None:
        self.readings = list(readings)

    def __call__(self) -> Net | None:
        reading = self.readings.pop(0)
        if isinstance(reading, OSError):
            raise reading
        return reading


def test_byte_rates() -> None:
    """Per second over the elapsed ms; a smaller value or no time elapsed gives None."""
    assert byte_rates((100, 0), (1100, 500), 2000) == [500.0, 250.0]
    assert byte_rates((100, 0), (99, 500), 2000) is None
    assert byte_rates((100, 0), (200, 500), 0) is None


def test_rates_across_samples_first_primed() -> None:
    """Construction reads once, so the first collect() already has a rate; ints, as the SDK."""
    clock = Clock()
    sampler = NetworkSampler(
        net_io_counters=Counters(Net(1_000, 5_000), Net(31_000, 95_000), Net(31_000, 95_003)),
        clock=clock,
    )
    clock.now_ms += 30_000
    assert sampler.collect() == Sample(
        T0 + 30_000, {"sys.network.send_bps": 1_000, "sys.network.receive_bps": 3_000}
    )
    clock.now_ms += 2_000
    assert sampler.collect().metrics == {"sys.network.send_bps": 0, "sys.network.receive_bps": 2}


def test_counter_reset_skips_one_sample_never_negative() -> None:
    """An interface going away makes the sum smaller: NoData once, then rates resume."""
    clock = Clock()
    sampler = NetworkSampler(
        net_io_counters=Counters(Net(10_000, 10_000), Net(500, 20_000), Net(10_500, 30_000)),
        clock=clock,
    )
    clock.now_ms += 10_000
    with pytest.raises(NoData, match="went backwards"):
        sampler.collect()
    clock.now_ms += 10_000
    assert sampler.collect().metrics == {
        "sys.network.send_bps": 1_000,
        "sys.network.receive_bps": 1_000,
    }


def test_no_interfaces_and_read_errors() -> None:
    """psutil's None (no NICs) is NoData; an OSError is a CollectorError naming the reason."""
    sampler = NetworkSampler(net_io_counters=Counters(None, None), clock=Clock())
    with pytest.raises(NoData, match="no network interfaces"):
        sampler.collect()
    failing = NetworkSampler(
        net_io_counters=Counters(Net(1, 1), OSError(13, "Permission denied")), clock=Clock()
    )
    with pytest.raises(CollectorError, match="cannot read network counters: Permission denied"):
        failing.collect()


def test_real_psutil() -> None:
    """With the real psutil: two readings give non-negative integer rates."""
    clock = Clock()
    sampler = NetworkSampler(clock=clock)
    clock.now_ms += 1_000
    metrics = sampler.collect().metrics
    assert all(isinstance(v, int) and v >= 0 for v in metrics.values())


NET_DEV = (
    "Inter-|   Receive                                  |  Transmit\n"
    " face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop\n"
    "    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n"
    "  eth0: 5000 50 0 0 0 0 0 0 7000 70 0 0 0 0 0 0\n"
)


def test_net_dev_totals_sum_every_interface() -> None:
    """/proc/net/dev's byte columns summed over interfaces, as psutil.net_io_counters() does."""
    from agent.collect.network import parse_net_dev

    assert parse_net_dev(NET_DEV) == (8000, 6000)
    assert parse_net_dev(NET_DEV.split("\n", 2)[0]) is None


def test_the_host_reader_agrees_with_psutil() -> None:
    """The kept-open reader gives the same interfaces' totals psutil gives (within traffic)."""
    import psutil

    from agent.collect.network import _host_net_counters

    ours, theirs = _host_net_counters(), psutil.net_io_counters()
    assert ours is not None
    assert abs(ours.bytes_recv - theirs.bytes_recv) < 10_000_000
    assert abs(ours.bytes_sent - theirs.bytes_sent) < 10_000_000
