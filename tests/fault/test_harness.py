"""Tests of the fault suite's own parts: the stand-in's records during flips, the checker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agent.api.client import CometClient
from agent.errors import ServerError, ThrottledError, TransportError
from tests.fakes.comet_server import CometStandIn, Recorded
from tests.fault import schedule
from tests.fault.checker import Taken, assert_delivered, compare
from tests.fault.schedule import HTTP_TIMEOUT_S, Phase, ScheduleDriver
from tests.helpers import CANARY_KEY, wait_until

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(name="client")
def _client(server: CometStandIn) -> Iterator[CometClient]:
    with CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=HTTP_TIMEOUT_S) as c:
        yield c


@pytest.mark.parametrize(
    ("phase", "error", "status", "accepted", "retry_after_s"),
    [
        (schedule.healthy(1), None, 200, True, None),
        (schedule.unavailable(1), ServerError, 503, False, None),
        (schedule.dropped(1), TransportError, 0, False, None),
        (schedule.throttled(1, retry_after_s=1), ThrottledError, 429, False, 1.0),
        (schedule.throttled_custom(1, retry_after_s=0.5), ThrottledError, 429, False, 1.0),
        (schedule.html(1), ServerError, 200, False, None),
        (schedule.truncated(1), TransportError, 0, False, None),
        (schedule.slow(1), TransportError, 200, True, None),
    ],
    ids=lambda v: v.name if isinstance(v, Phase) else None,
)
def test_stand_in_records_each_request_and_its_outcome(
    server: CometStandIn,
    client: CometClient,
    phase: Phase,
    error: type[Exception] | None,
    status: int,
    accepted: bool,
    retry_after_s: float | None,
) -> None:
    """One request per phase: the client sees the fault; the stand-in records exactly that
    request once, with the status it answered, whether the data landed, and the fault's mode
    (a slow answer lands after the client gave up: recorded late, stamped when it arrived)."""
    phase.apply(server)
    sent_at = time.time()
    body = {"loadAverage": 0.5, "timestamp": 1_700_000_000_000}
    if error is None:
        client.call("add-load-metrics", body, experiment_key=KEY)
    else:
        with pytest.raises(error) as caught:
            client.call("add-load-metrics", body, experiment_key=KEY)
        assert getattr(caught.value, "retry_after_s", None) == retry_after_s
    wait_until(lambda: server.count(ok_only=False) == 1, timeout_s=5)
    (rec,) = server.received(ok_only=False)
    assert (rec.route, rec.status, rec.accepted) == ("add-load-metrics", status, accepted)
    assert rec.fault == (None if phase.mode == "healthy" else phase.mode)
    assert rec.experiment_key == KEY
    assert sent_at <= rec.at < sent_at + HTTP_TIMEOUT_S
    server.recover()


def test_driver_flips_in_order_and_keeps_a_timeline(server: CometStandIn) -> None:
    """Phases begin in order, each after the previous one's duration; phase_at() names the
    phase in force at a moment, and stop() leaves the stand-in healthy."""
    phases = [schedule.unavailable(0.3), schedule.dropped(0.3), schedule.healthy(0)]
    with ScheduleDriver(server, phases) as driver:
        driver.wait(timeout_s=5)
    names = [name for _, name in driver.timeline]
    assert names[:3] == ["503", "drop", "healthy"]
    starts = [at for at, _ in driver.timeline]
    assert 0.25 < starts[1] - starts[0] < 1.0
    assert driver.phase_at(int((starts[0] + 0.1) * 1000)) == "503"
    assert driver.phase_at(int((starts[1] + 0.1) * 1000)) == "drop"
    assert driver.phase_at(int((starts[0] - 1) * 1000)) == "before"
    assert server._next_fault("add-load-metrics") is None


def _rec(at: float, route: str, body: dict[str, object], *, fault: str | None = None) -> Recorded:
    rec = Recorded(route, "POST", "/", {}, {}, body, b"", at, experiment_key=KEY)
    rec.fault = fault
    return rec


def _load(at: float, *stamps: int, fault: str | None = None) -> list[Recorded]:
    return [_rec(at, "add-load-metrics", {"timestamp": s}, fault=fault) for s in stamps]


def _batch(at: float, *stamps: int) -> Recorded:
    values = [{"metricName": "sys.load.avg", "metricValue": 1, "timestamp": s} for s in stamps]
    return _rec(at, "log-metric-batch", {"values": values})


TAKEN = [Taken("load", s, items=1) for s in (1000, 2000, 3000, 4000)]
TYPED_ONLY = [Taken("load", s, items=0) for s in (1000, 2000, 3000, 4000)]  # no batch items


def test_checker_passes_a_clean_delivery() -> None:
    """All taken, once, in order, on both channels: nothing to report."""
    requests = [*_load(1.0, 1000, 2000, 3000, 4000), _batch(2.0, 1000, 2000, 3000, 4000)]
    report = compare(TAKEN, requests, KEY)
    assert (report.lost, report.duplicates, report.out_of_order, report.unexpected) == (0, 0, 0, 0)
    assert_delivered(report)


def test_checker_names_lost_duplicated_reordered_and_unexpected_stamps() -> None:
    """Each kind of breach is counted and its timestamps are in the failure message."""
    (refused,) = _load(0.5, 4000)
    refused.status = 503  # a refused request counts for nothing
    requests = [
        refused,
        *_load(1.0, 1000, 3000, 2000, 3000, 9000),  # 4000 lost, 2000 late, 3000 twice, 9000 new
        _batch(2.0, 1000, 2000, 3000),  # the 4000 item is missing
    ]
    report = compare(TAKEN, requests, KEY)
    assert report.streams["add-load-metrics"].lost == [4000]
    assert report.streams["add-load-metrics"].duplicates == {3000: 1}
    assert report.streams["add-load-metrics"].out_of_order == [(2000, 3000)]
    assert report.streams["add-load-metrics"].unexpected == [9000]
    assert report.streams["log-metric-batch[load]"].lost == [4000]
    with pytest.raises(AssertionError) as failed:
        assert_delivered(report)
    message = str(failed.value)
    for needle in ("lost [4000]", "duplicated [3000]", "2000 after 3000", "unexpected [9000]"):
        assert needle in message, message


def test_checker_explains_a_copy_after_a_late_answer() -> None:
    """A copy re-sent after a slow answer (which landed) is a late duplicate, not a breach;
    order is judged by first arrivals, so the re-send is no reordering either."""
    requests = [*_load(1.0, 1000, 2000, fault="slow"), *_load(1.6, 1000, 2000, 3000, 4000)]
    report = compare(TYPED_ONLY, requests, KEY)
    assert report.duplicates == 0
    assert report.late_duplicates == 2
    assert report.out_of_order == 0
    assert_delivered(report)


def test_checker_orders_by_taking_not_by_timestamp() -> None:
    """After a wall-clock step back, a later sample has a smaller stamp: arriving in the order
    taken is right, arriving in timestamp order is the reordering."""
    taken = [Taken("load", s, items=0) for s in (5000, 6000, 1000, 2000)]
    in_taking_order = compare(taken, _load(1.0, 5000, 6000, 1000, 2000), KEY)
    assert in_taking_order.out_of_order == 0
    by_stamp = compare(taken, _load(1.0, 1000, 2000, 5000, 6000), KEY)
    assert by_stamp.out_of_order == 2


def test_checker_reads_arrival_time_not_record_order() -> None:
    """A slow answer is recorded after the retry that overtook it; arrival time decides."""
    late = _load(1.0, 1000, fault="slow")
    retry = _load(1.5, 1000, 2000, 3000, 4000)
    report = compare(TYPED_ONLY, [*retry, *late], KEY)
    assert report.out_of_order == 0
    assert report.late_duplicates == 1


def test_checker_allows_only_the_copies_it_is_told_of() -> None:
    """Copies of the request in flight at a kill pass; a copy of anything else fails."""
    requests = [*_load(1.0, 1000, 2000, 3000), *_load(2.0, 3000, 4000)]
    report = compare(TYPED_ONLY, requests, KEY)
    assert_delivered(report, allowed_duplicates={"add-load-metrics": {3000}})
    with pytest.raises(
        AssertionError, match=r"unexplained copies: \{'add-load-metrics': \[3000\]\}"
    ):
        assert_delivered(report, allowed_duplicates={"add-load-metrics": {2000}})
