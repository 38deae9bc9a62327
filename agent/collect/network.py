"""Network: sys.network.send_bps and receive_bps from the interface byte counters."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from agent.collect.base import Clock, Roots, Sample, read_kept
from agent.errors import CollectorError, NoData
from agent.message import now_ms


class NetCounters(Protocol):
    """What psutil.net_io_counters() gives that we use."""

    @property
    def bytes_sent(self) -> int: ...  # noqa: D102
    @property
    def bytes_recv(self) -> int: ...  # noqa: D102


def byte_rates(prev: Sequence[int], now: Sequence[int], elapsed_ms: int) -> list[float] | None:
    """Return per-second rates of counters between two readings; None if any went backwards.

    A smaller value is a reset (an interface or disk went away, a counter wrapped, the
    host rebooted under a container): that interval has no honest rate, so it is skipped
    rather than sent as a negative number or a spike.
    """
    if elapsed_ms <= 0 or any(b < a for a, b in zip(prev, now, strict=True)):
        return None
    return [(b - a) * 1000 / elapsed_ms for a, b in zip(prev, now, strict=True)]


class Totals(NamedTuple):
    """Bytes over every interface, as psutil.net_io_counters() sums them."""

    bytes_sent: int
    bytes_recv: int


def parse_net_dev(text: str) -> Totals | None:
    """Sum /proc/net/dev's received (1st) and transmitted (9th) byte columns; None: no lines."""
    sent = recv = 0
    seen = False
    for line in text.splitlines()[2:]:  # two header lines
        _name, sep, data = line.partition(":")
        fields = data.split()
        if not sep or len(fields) < 9:
            continue
        try:
            recv += int(fields[0])
            sent += int(fields[8])
        except ValueError:
            raise CollectorError(f"/proc/net/dev: unreadable line {line.strip()[:80]!r}") from None
        seen = True
    return Totals(sent, recv) if seen else None


_NET_DEV = Path("/proc/net/dev")


def _host_net_counters(path: Path = _NET_DEV) -> NetCounters | None:
    # /proc/net/dev kept open and parsed for the two totals: psutil builds a tuple per
    # interface and reopens the file each time, a tenth of an idle agent's CPU at 1 s.
    return parse_net_dev(read_kept(path))


def net_dev_reader(roots: Roots) -> Callable[[], NetCounters | None]:
    """The counters of `roots`' /proc/net/dev (a node's, through --host-root)."""
    path = roots.proc / "net" / "dev"
    return lambda: _host_net_counters(path)


class NetworkSampler:
    """Sample bytes sent and received per second over all interfaces, as the SDK does."""

    name = "network"

    def __init__(
        self,
        *,
        net_io_counters: Callable[[], NetCounters | None] = _host_net_counters,
        clock: Clock = now_ms,
    ) -> None:
        self._counters = net_io_counters
        self._clock = clock
        self._prev: tuple[int, tuple[int, int]] | None = None
        with contextlib.suppress(CollectorError):  # collect() says why, on schedule
            self._prev = self._read(clock())  # priming: the first rate needs an earlier reading

    def _read(self, stamp: int) -> tuple[int, tuple[int, int]]:
        try:
            counters = self._counters()
        except OSError as exc:  # psutil reads /proc/net/dev
            raise CollectorError(f"cannot read network counters: {exc.strerror or exc}") from None
        if counters is None:
            raise NoData("no network interfaces")
        return stamp, (counters.bytes_sent, counters.bytes_recv)

    def collect(self) -> Sample:
        """Return the rates since the previous reading; NoData when there is none to compare."""
        stamp = self._clock()
        prev, now = self._prev, self._read(stamp)
        if prev is None:
            self._prev = now
            raise NoData("no earlier network reading to compare with; rates start next sample")
        if stamp == prev[0]:
            raise NoData("no time passed since the previous network reading")  # keep that one
        self._prev = now
        rates = byte_rates(prev[1], now[1], stamp - prev[0])
        if rates is None:
            raise NoData("network counters went backwards (or the clock did); skipped once")
        sent, received = rates
        return Sample(
            stamp, {"sys.network.send_bps": round(sent), "sys.network.receive_bps": round(received)}
        )

    def close(self) -> None:
        """Nothing to release."""
