"""Compare the samples the agent took with what the stand-in accepted, per endpoint.

What the agent took comes from its ``sample.queued`` DEBUG lines (one per
sample and collector, logged after the outbox write, with the number of
metric-batch ``items``). What arrived comes from the stand-in's records of
accepted requests of one experiment key, in arrival order (``Recorded.at``;
a slow answer is recorded late but arrived when it arrived).

Streams: each typed endpoint (``add-cpu-metrics`` ...) and each metric name of
``log-metric-batch``. For every stream the report lists

* lost: taken but never accepted;
* duplicates: accepted more than once (split into those explained by a *late*
  answer: the stand-in took the data but the agent's read timed out first, so
  at-least-once delivery must send it again, and the unexplained rest);
* out of order: a sample accepted for the first time after one the agent took
  later had been (a re-sent duplicate is not a reordering). "Later" is the order
  of the agent's sample.queued lines: the timestamp order, unless the wall clock
  stepped back;
* unexpected: accepted but never logged as taken (a kill between the outbox
  write and the log line).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn, Recorded
from tests.helpers import wait_until

# Typed endpoint → the collector whose samples it carries.
TYPED = {
    "add-cpu-metrics": "cpu",
    "add-ram-metrics": "memory",
    "add-load-metrics": "load",
    "add-gpu-metrics": "gpu",
}
# Metric-name prefix → collector (wire §3.7 names; no node prefix in the fault suite).
PREFIXES = {
    "sys.cpu.": "cpu",
    "sys.ram.": "memory",
    "sys.load.": "load",
    "sys.disk.": "disk",
    "sys.network.": "network",
    "sys.process.": "process",
    "sys.gpu.": "gpu",
}
SHOWN = 12  # timestamps listed per problem in a failure message


@dataclass(frozen=True)
class Taken:
    """One sample the agent logged as queued."""

    collector: str
    timestamp_ms: int
    items: int
    written: bool = True


def taken_from(events: Iterable[Mapping[str, object]]) -> list[Taken]:
    """The samples in an agent's log events (its ``sample.queued`` lines)."""
    out = []
    for e in events:
        if e.get("event") != "sample.queued":
            continue
        out.append(
            Taken(
                str(e["collector"]),
                int(e["timestamp_ms"]),  # type: ignore[call-overload]
                int(e.get("items", 0)),  # type: ignore[call-overload]
                bool(e.get("written", True)),
            )
        )
    return out


@dataclass
class StreamReport:
    """What happened to one stream (a typed endpoint or a metric name)."""

    stream: str
    taken: int = 0
    accepted: int = 0
    lost: list[int] = field(default_factory=list)
    duplicates: Counter[int] = field(default_factory=Counter)  # stamp → extra copies
    late_duplicates: Counter[int] = field(default_factory=Counter)  # after a late answer
    out_of_order: list[tuple[int, int]] = field(default_factory=list)  # (stamp, after this)
    unexpected: list[int] = field(default_factory=list)


@dataclass
class Report:
    """Every stream's report, and totals for assertions and messages."""

    streams: dict[str, StreamReport]
    samples: int = 0  # sample.queued lines compared
    phase_at: Callable[[int], str] | None = None

    @property
    def lost(self) -> int:
        return sum(len(s.lost) for s in self.streams.values())

    @property
    def duplicates(self) -> int:
        """Unexplained extra copies (not after a late answer)."""
        return sum(s.duplicates.total() for s in self.streams.values())

    @property
    def late_duplicates(self) -> int:
        return sum(s.late_duplicates.total() for s in self.streams.values())

    @property
    def out_of_order(self) -> int:
        return sum(len(s.out_of_order) for s in self.streams.values())

    @property
    def unexpected(self) -> int:
        return sum(len(s.unexpected) for s in self.streams.values())

    def duplicated_stamps(self) -> set[int]:
        """Timestamps re-sent without a late answer to explain it."""
        return {t for s in self.streams.values() for t in s.duplicates}

    def summary(self) -> str:
        """One line of totals."""
        return (
            f"{self.samples} samples in {len(self.streams)} streams: lost {self.lost}, "
            f"out of order {self.out_of_order}, duplicates {self.duplicates} "
            f"(+{self.late_duplicates} after late answers), unexpected {self.unexpected}"
        )

    def describe(self) -> str:
        """The summary, then every stream with a problem and its timestamps."""
        lines = [self.summary()]
        for s in sorted(self.streams.values(), key=lambda r: r.stream):
            parts = []
            if s.lost:
                parts.append(f"lost {self._stamps(s.lost)}")
            if s.out_of_order:
                shown = ", ".join(f"{a} after {b}" for a, b in s.out_of_order[:SHOWN])
                parts.append(f"out of order [{shown}]")
            if s.duplicates:
                parts.append(f"duplicated {self._stamps(sorted(s.duplicates))}")
            if s.unexpected:
                parts.append(f"unexpected {self._stamps(s.unexpected)}")
            if parts:
                lines.append(
                    f"  {s.stream} ({s.taken} taken, {s.accepted} accepted): " + "; ".join(parts)
                )
        return "\n".join(lines)

    def _stamps(self, stamps: Sequence[int]) -> str:
        shown = [
            f"{t} ({self.phase_at(t)})" if self.phase_at is not None else str(t)
            for t in stamps[:SHOWN]
        ]
        more = f" and {len(stamps) - SHOWN} more" if len(stamps) > SHOWN else ""
        return "[" + ", ".join(shown) + more + "]"


def collector_of(metric_name: str) -> str | None:
    """The collector whose samples carry `metric_name`."""
    for prefix, collector in PREFIXES.items():
        if metric_name.startswith(prefix):
            return collector
    return None


def arrivals(
    requests: Sequence[Recorded], experiment_key: str
) -> dict[str, list[tuple[int, bool]]]:
    """Accepted (timestamp, late) per stream for one key, in arrival order."""
    out: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    ordered = sorted(
        (r for r in requests if r.accepted and r.experiment_key == experiment_key),
        key=lambda r: r.at,  # stable: equal times keep the record order
    )
    for rec in ordered:
        late = rec.fault == "slow"
        for stream, stamp in _items(rec):
            out[stream].append((stamp, late))
    return out


def stamps_of(rec: Recorded) -> dict[str, set[int]]:
    """The timestamps one request carried, per stream."""
    out: dict[str, set[int]] = defaultdict(set)
    for stream, stamp in _items(rec):
        out[stream].add(stamp)
    return out


def _items(rec: Recorded) -> Iterator[tuple[str, int]]:
    body = rec.body
    if not isinstance(body, dict):
        return
    if rec.route in TYPED:
        yield rec.route, int(body["timestamp"])
    elif rec.route == "log-metric-batch":
        for item in body["values"]:
            yield str(item["metricName"]), int(item["timestamp"])


def compare(
    taken: Sequence[Taken],
    requests: Sequence[Recorded],
    experiment_key: str,
    *,
    phase_at: Callable[[int], str] | None = None,
) -> Report:
    """Check every stream of `experiment_key`: lost, duplicated, reordered, unexpected."""
    by_collector: dict[str, dict[int, Taken]] = defaultdict(dict)
    rank: dict[str, dict[int, int]] = defaultdict(dict)  # collector → stamp → taking order
    for t in taken:
        by_collector[t.collector][t.timestamp_ms] = t
        rank[t.collector].setdefault(t.timestamp_ms, len(rank[t.collector]))
    arrived = arrivals(requests, experiment_key)
    streams: dict[str, StreamReport] = {}
    for endpoint, collector in TYPED.items():
        if by_collector.get(collector) or arrived.get(endpoint):
            expected = set(by_collector.get(collector, {}))
            streams[endpoint] = _stream(
                endpoint, expected, arrived.get(endpoint, []), rank[collector]
            )
    names_at: dict[tuple[str, int], set[str]] = defaultdict(set)
    metric_names = [n for n in arrived if n not in TYPED]
    for name in metric_names:
        collector = collector_of(name)
        samples = by_collector.get(collector or "", {})
        for stamp, _late in arrived[name]:
            names_at[(collector or "?", stamp)].add(name)
        # A metric may be absent from some samples (a rate needs two readings): which
        # stamps it must have is settled below by counting items; here: order and copies.
        streams[name] = _stream(name, None, arrived[name], rank[collector or ""], set(samples))
    for collector, samples in by_collector.items():
        for stamp, t in samples.items():
            missing = t.items - len(names_at.get((collector, stamp), set()))
            if missing > 0:
                key = f"log-metric-batch[{collector}]"
                report = streams.setdefault(key, StreamReport(key))
                report.lost.append(stamp)
    for collector, samples in by_collector.items():
        key = f"log-metric-batch[{collector}]"
        if key in streams:
            streams[key].taken = len(samples)
            streams[key].lost.sort()
    return Report(streams, len(taken), phase_at)


def _stream(
    name: str,
    expected: set[int] | None,
    got: Sequence[tuple[int, bool]],
    rank: Mapping[int, int],
    known: set[int] | None = None,
) -> StreamReport:
    report = StreamReport(name, taken=len(expected) if expected is not None else 0)
    report.accepted = len(got)
    seen: set[int] = set()
    late_seen: set[int] = set()
    latest: int | None = None  # the stamp taken last among those arrived so far
    for stamp, late in got:
        if stamp in seen:
            if stamp in late_seen:
                report.late_duplicates[stamp] += 1
            else:
                report.duplicates[stamp] += 1
        else:
            seen.add(stamp)
            order = rank.get(stamp)
            if order is not None:  # an unexpected stamp has no place in the order
                if latest is not None and order < rank[latest]:
                    report.out_of_order.append((stamp, latest))
                elif latest is None or order > rank[latest]:
                    latest = stamp
        if late:
            late_seen.add(stamp)
    valid = expected if expected is not None else known
    if expected is not None:
        report.lost = sorted(expected - seen)
    if valid is not None:
        report.unexpected = sorted(seen - valid)
    return report


def check(
    server: CometStandIn,
    taken: Sequence[Taken],
    experiment_key: str,
    *,
    phase_at: Callable[[int], str] | None = None,
) -> Report:
    """``compare`` against everything the stand-in has recorded so far."""
    return compare(taken, server.received(ok_only=False), experiment_key, phase_at=phase_at)


def assert_delivered(
    report: Report,
    *,
    allowed_duplicates: Mapping[str, set[int]] | None = None,
    allow_unexpected: bool = False,
    context: str = "",
) -> None:
    """Fail with the report unless nothing was lost or reordered and no copy is unexplained.

    `allowed_duplicates` (stream → stamps) are copies the caller can explain, e.g. the items
    of the one request in flight when the agent was killed.
    """
    allowed = allowed_duplicates or {}
    stray = {
        name: sorted(set(s.duplicates) - allowed.get(name, set()))
        for name, s in report.streams.items()
    }
    stray = {name: stamps for name, stamps in stray.items() if stamps}
    ok = (
        report.lost == 0
        and report.out_of_order == 0
        and not stray
        and (allow_unexpected or report.unexpected == 0)
    )
    if not ok:
        where = f"{context}\n" if context else ""
        unexplained = f"\nunexplained copies: {stray}" if stray and allowed else ""
        raise AssertionError(
            f"{where}delivery bar not met (lost 0, out of order 0, no unexplained "
            f"duplicates):\n{report.describe()}{unexplained}"
        )


def wait_delivered(
    server: CometStandIn,
    taken: Callable[[], list[Taken]],
    key: str,
    timeout_s: float = 30.0,
    *,
    phase_at: Callable[[int], str] | None = None,
) -> Report:
    """Poll until nothing taken is missing at the stand-in; fail with the report at the deadline."""
    reports: list[Report] = []

    def done() -> bool:
        reports.append(check(server, taken(), key, phase_at=phase_at))
        return reports[-1].lost == 0

    try:
        wait_until(done, timeout_s=timeout_s, interval_s=0.25)
    except AssertionError:
        raise AssertionError(
            f"not delivered within {timeout_s} s:\n{reports[-1].describe()}"
        ) from None
    return reports[-1]


def agent_taken(agent: AgentProcess) -> Callable[[], list[Taken]]:
    """What `agent` has taken so far, as a callable for ``wait_delivered``."""
    return lambda: taken_from(agent.named("sample.queued"))
