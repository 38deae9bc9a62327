"""Sender: a real outbox drained into the loopback Comet stand-in through RestSink."""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from random import Random

import pytest
import structlog
from structlog.testing import capture_logs

from agent.api.client import CometClient
from agent.delivery.backoff import Backoff
from agent.delivery.outbox import Outbox
from agent.delivery.sender import Sender
from agent.delivery.sinks.rest import RestSink
from agent.message import Message
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, wait_until

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000_000
FAST = Backoff(wait_initial=0.05, wait_max=0.5, wait_jitter=0.05)


def item(n: int) -> dict[str, object]:
    """Metric item n, stamped T0 + n ms (as when it was sampled)."""
    return {
        "metricName": "sys.cpu.percent.avg",
        "metricValue": n,
        "step": None,
        "epoch": None,
        "context": None,
        "timestamp": T0 + n,
    }


def metrics(first: int, count: int = 10) -> Message:
    """One metric-batch message with `count` items starting at item `first`."""
    items = [item(n) for n in range(first, first + count)]
    return Message("log-metric-batch", KEY, {"values": items}, T0 + first)


def load(n: int) -> Message:
    """A typed Add Processor Load Metrics message stamped T0 + n."""
    return Message("add-load-metrics", KEY, {"loadAverage": n / 100, "timestamp": T0 + n}, T0 + n)


def loads_received(server: CometStandIn) -> list[int]:
    return [r.body["timestamp"] - T0 for r in server.received("add-load-metrics")]  # type: ignore[index]


@pytest.fixture(name="box")
def _box(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db") as box:
        yield box


@pytest.fixture(name="sink")
def _sink(server: CometStandIn) -> Iterator[RestSink]:
    sink = RestSink(CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=3))
    yield sink
    sink.close()


@pytest.fixture(name="make")
def _make(box: Outbox, sink: RestSink) -> Iterator[type[Sender]]:
    """Build senders with a short backoff and a fixed seed; stop them all at the end."""
    made: list[Sender] = []

    def make(**kwargs: object) -> Sender:
        sender = Sender(box, sink, backoff=FAST, rand=Random(0), **kwargs)  # type: ignore[arg-type]
        made.append(sender)
        return sender

    yield make  # type: ignore[misc]
    for sender in made:
        assert sender.stop(5)


def test_metric_messages_merge_into_few_requests(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """50 messages of 10 items with batch_items=100 go as 5 requests, items in order, unchanged."""
    box.put_many([metrics(n * 10) for n in range(50)])
    with capture_logs() as logs:
        assert make(batch_items=100).flush(10)
    assert server.count("log-metric-batch") == 5
    assert [len(r.body["values"]) for r in server.received()] == [100] * 5  # type: ignore[index]
    assert server.metric_items() == [item(n) for n in range(500)]  # original timestamps
    assert {r.experiment_key for r in server.received()} == {KEY}
    sent = [e for e in logs if e["event"] == "outbox.sent"]
    assert sum(e["count"] for e in sent) == 50
    assert sum(e["requests"] for e in sent) == 5


def test_typed_bodies_go_one_request_each_between_batches(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """Interleaved typed messages do not break the merge; each keeps its own timestamp."""
    for n in range(6):
        box.put_many([metrics(n * 10), load(n)])
    sender = make()
    sender.start()
    wait_until(lambda: not box.pending(), timeout_s=10)
    assert server.count("log-metric-batch") == 1
    assert server.metric_items() == [item(n) for n in range(60)]
    assert loads_received(server) == [0, 1, 2, 3, 4, 5]
    status = sender.status()
    assert (status.sent_total, status.requests_total) == (12, 7)
    assert status.last_success_ms is not None and status.last_error is None
    on_disk = b"".join(p.read_bytes() for p in box.path.parent.glob("outbox.db*"))
    assert KEY.encode() in on_disk and CANARY_KEY.encode() not in on_disk


def test_merge_respects_other_fields_and_batch_items(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """Messages of another experiment never share a request; a batch never passes batch_items."""
    other = "f" * 32
    box.put_many([metrics(0), Message("log-metric-batch", other, {"values": [item(10)]}, T0)])
    box.put_many([metrics(20, 7), metrics(30, 7)])
    assert make(batch_items=15).flush(10)
    by_request = [(r.experiment_key, len(r.body["values"])) for r in server.received()]  # type: ignore[index]
    assert by_request == [(KEY, 10), (other, 1), (KEY, 14)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["status", "drop"])
def test_outage_then_recovery_delivers_everything_in_order(
    box: Outbox, make: type[Sender], server: CometStandIn, mode: str
) -> None:
    """During a 503 (or dropped-connection) outage nothing is lost; then all arrive in order."""
    server.outage(mode=mode, status=503)
    sender = make(batch_items=30)
    sender.start()
    for n in range(5):
        box.put(metrics(n * 10))
        box.put(load(n))
        sender.wake()
    wait_until(lambda: server.count(ok_only=False) >= 4, timeout_s=10)
    assert server.count() == 0
    assert sender.status().last_error is not None
    for n in range(5, 10):
        box.put(metrics(n * 10))
        box.put(load(n))
    server.recover()
    wait_until(lambda: not box.pending(), timeout_s=10)
    assert server.metric_items() == [item(n) for n in range(100)]
    assert loads_received(server) == list(range(10))
    assert box.stats().dead == 0


@pytest.mark.slow
def test_429_retry_after_parks_only_that_endpoint(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """After a 429 with Retry-After: 2 the endpoint waits 2 s while another keeps flowing."""
    server.fail("log-metric-batch", status=429, headers={"Retry-After": "2"})
    sender = make()
    box.put(metrics(0))
    sender.start()
    wait_until(lambda: server.count("log-metric-batch", ok_only=False) == 1, timeout_s=10)
    throttled_at = server.received("log-metric-batch", ok_only=False)[0].at
    wait_until(lambda: "log-metric-batch" in sender.status().throttled, timeout_s=5)
    assert sender.status().throttled_ever
    box.put(metrics(10))
    for n in range(3):
        box.put(load(n))
        sender.wake()
        wait_until(lambda n=n: len(loads_received(server)) == n + 1, timeout_s=5)
    assert time.time() < throttled_at + 2.0  # the loads went during the incident
    wait_until(lambda: server.count("log-metric-batch") == 1, timeout_s=10)
    retried = server.received("log-metric-batch")[0]
    assert retried.at >= throttled_at + 2.0
    assert retried.body["values"] == [item(n) for n in range(20)]  # type: ignore[index]
    status = sender.status()
    assert status.throttled == {} and status.throttled_ever


@pytest.mark.slow
def test_429_retry_after_custom_adds_half_a_second(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """Retry-After-Custom: 0.5 parks the endpoint for 0.5 + 0.5 s (wire §4.2)."""
    server.fail("add-load-metrics", status=429, headers={"Retry-After-Custom": "0.5"})
    box.put(load(0))
    assert make().flush(10)
    first, second = server.received("add-load-metrics", ok_only=False)
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 1.0


@pytest.mark.slow
def test_429_without_header_waits_60_s_and_flush_keeps_its_deadline(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """A bare 429 opens a 60 s incident; flush gives up at its deadline and keeps the data."""
    server.fail("add-load-metrics", status=429)
    box.put(load(0))
    sender = make()
    started = time.monotonic()
    assert not sender.flush(1.0)
    assert 1.0 <= time.monotonic() - started < 3.0
    until = sender.status().throttled["add-load-metrics"]
    assert 58_000 < until - int(time.time() * 1000) <= 60_001
    assert server.count("add-load-metrics", ok_only=False) == 1
    assert box.pending() == 1


def test_400_is_a_dead_letter_and_later_messages_still_go(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """A refused message is kept as a dead letter, logged once at ERROR; the next ones go."""
    server.fail("add-load-metrics", status=400, body={"msg": "bad field", "sdk_error_code": 1})
    box.put_many([load(0), load(1), load(2)])
    with capture_logs() as logs:
        assert make().flush(10)
    assert loads_received(server) == [1, 2]
    assert box.stats().dead == 1
    (dead,) = box.dead_letters()
    assert dead.message == load(0)
    assert "HTTP 400: bad field" in (dead.last_error or "")
    rejected = [e for e in logs if e["event"] == "outbox.rejected"]
    assert len(rejected) == 1
    assert (rejected[0]["log_level"], rejected[0]["endpoint"]) == ("error", "add-load-metrics")


def test_a_refused_batch_is_retried_message_by_message(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """When a merged batch gets a 400, each message goes alone: only the bad one is dead."""
    server.fail("log-metric-batch", status=400, times=2)
    box.put_many([metrics(0), metrics(10), metrics(20)])
    assert make().flush(10)
    assert [r.status for r in server.received(ok_only=False)] == [400, 400, 200, 200]
    assert server.metric_items() == [item(n) for n in range(10, 30)]
    assert [d.message for d in box.dead_letters()] == [metrics(0)]


@pytest.mark.slow
def test_401_pauses_everything_and_loses_nothing(
    box: Outbox, server: CometStandIn, tmp_path: Path
) -> None:
    """A rejected key pauses sending, logs the fix once, keeps all; a fixed key resumes."""
    wrong = "WRONGk3yWRONGk3yWRONGk3y77"
    sink = RestSink(CometClient(api_key=wrong, url_override=server.url, timeout_s=3))
    sender = Sender(box, sink, backoff=FAST, rand=Random(0))
    box.put_many([metrics(0), load(0), load(1)])
    with capture_logs() as logs:
        sender.start()
        wait_until(lambda: server.count(ok_only=False) >= 3, timeout_s=10)  # retried, paused
        status = sender.status()
        assert status.paused_auth
        assert "COMET_API_KEY" in (status.last_error or "")
        assert box.pending() == 3 and box.stats().dead == 0
        assert not sender.flush(5)  # paused: flush says so at once instead of waiting
        server.api_key = wrong  # the key was rotated on the server side
        wait_until(lambda: not box.pending(), timeout_s=10)
        assert sender.stop(5)
    sink.close()
    assert not sender.status().paused_auth
    assert server.metric_items() == [item(n) for n in range(10)]
    assert loads_received(server) == [0, 1]
    events = [e["event"] for e in logs]
    assert events.count("sender.auth_failed") == 1
    assert "sender.auth_recovered" in events
    assert wrong not in str(logs) and CANARY_KEY not in str(logs)


@pytest.mark.parametrize("mode", ["html", "garbage-json", "truncated"])
def test_garbage_answers_are_retried_without_loss_or_duplicates(
    box: Outbox, make: type[Sender], server: CometStandIn, mode: str
) -> None:
    """A 200 that is not Comet's JSON did not land: it is sent again, and arrives once."""
    server.fail("log-metric-batch", mode=mode, times=2)
    box.put_many([metrics(0), metrics(10)])
    assert make().flush(10)
    answers = server.received("log-metric-batch", ok_only=False)
    assert len(answers) == 3
    landed = [i for r in server.received("log-metric-batch") for i in r.body["values"]]  # type: ignore[index]
    assert landed == [item(n) for n in range(20)]
    assert box.stats().dead == 0


@pytest.mark.slow
def test_flush_honours_its_deadline_with_a_slow_server(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """With 0.4 s per answer flush(1) returns False after about a second, keeping the rest."""
    server.outage(mode="slow", delay_s=0.4)
    box.put_many([load(n) for n in range(20)])
    sender = make()
    started = time.monotonic()
    assert not sender.flush(1.0)
    assert time.monotonic() - started < 1.0 + 0.4 + 1.0  # the deadline, one answer, slack
    assert 0 < box.pending() < 20
    server.recover()
    assert sender.flush(10)
    assert loads_received(server) == list(range(20))


@pytest.mark.slow
def test_stop_during_a_batch_releases_the_rest(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """stop() mid-batch puts untried rows back with no attempt; a new sender sends them once."""
    server.outage(mode="slow", delay_s=0.2)
    box.put_many([load(n) for n in range(20)])
    sender = make()
    sender.start()
    wait_until(lambda: server.count() >= 1, timeout_s=10)
    assert sender.stop(5)
    stats = box.stats()
    assert stats.leased == 0 and 0 < stats.ready < 20
    assert {s.attempts for s in box.lease(100)} == {0}
    box.release(range(1, 100))
    server.recover()
    assert make().flush(10)
    assert loads_received(server) == list(range(20))


def test_a_sink_bug_keeps_the_data(box: Outbox) -> None:
    """An unexpected exception in a sink is logged with its traceback; the message stays."""

    class Broken:
        def send(self, *args: object) -> object:
            raise RuntimeError("bug")

        def close(self) -> None:
            pass

    box.put(load(0))
    with capture_logs() as logs:
        assert not Sender(box, Broken(), backoff=FAST, rand=Random(0)).flush(0.3)
    assert box.pending() == 1 and box.stats().dead == 0
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["sender.crashed"]


CHILD_DRAINS = """
import sys, threading
from pathlib import Path
from agent.api.client import CometClient
from agent.delivery.outbox import Outbox
from agent.delivery.sender import Sender
from agent.delivery.sinks.rest import RestSink
box = Outbox(Path(sys.argv[1]))
sink = RestSink(CometClient(api_key=sys.argv[3], url_override=sys.argv[2], timeout_s=5))
Sender(box, sink).start()
print("draining", flush=True)
threading.Event().wait(60)
"""


@pytest.mark.slow
def test_kill_9_mid_drain_then_restart_delivers_everything(
    tmp_path: Path, sink: RestSink, server: CometStandIn
) -> None:
    """A sender process killed mid-drain loses nothing: a restart sends the rest (at least once)."""
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put_many([load(n) for n in range(40)])
    server.outage(mode="slow", delay_s=0.05)
    with subprocess.Popen(
        [sys.executable, "-c", CHILD_DRAINS, str(path), server.url, CANARY_KEY],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "draining"
        wait_until(lambda: server.count() >= 5, timeout_s=20)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert server.count() < 40
    server.recover()
    with Outbox(path) as box:  # the restart: the dead process's leases are ready again
        assert Sender(box, sink, backoff=FAST, rand=Random(0)).flush(20)
    received = loads_received(server)
    assert sorted(set(received)) == list(range(40))
    assert len(received) - 40 <= 1  # at most the request in flight at the kill went twice


SLOW = Backoff(wait_initial=30, wait_max=60, wait_jitter=0.1)


def test_one_success_ends_every_endpoints_back_off(
    box: Outbox, sink: RestSink, server: CometStandIn
) -> None:
    """After an outage, the first 200 (any endpoint) reopens the others' 30 s back-offs."""
    server.outage(status=503)
    sender = Sender(box, sink, backoff=SLOW, rand=Random(0))
    box.put_many([metrics(0), load(0)])
    sender.start()
    try:
        wait_until(lambda: server.count(ok_only=False) >= 2, timeout_s=10)
        server.recover()
        box.put(Message("add-ram-metrics", KEY, {"totalRam": 2, "usedRam": 1, "timestamp": T0}, T0))
        sender.wake()
        wait_until(lambda: not box.pending(), timeout_s=10)  # was: 30 s of back-off
        assert server.metric_items() == [item(n) for n in range(10)]
        assert loads_received(server) == [0]
    finally:
        sender.stop()


def test_a_keep_alive_success_ends_the_outage_for_the_sender(
    box: Outbox, sink: RestSink, server: CometStandIn
) -> None:
    """Connections refused put everything on hold; a keep-alive answer (recovered()) ends it."""
    server.outage(mode="drop")
    sender = Sender(box, sink, backoff=SLOW, rand=Random(0))
    box.put_many([metrics(0), load(0)])
    sender.start()
    try:
        wait_until(lambda: server.count(ok_only=False) >= 1, timeout_s=10)
        wait_until(lambda: sender.status().last_error is not None, timeout_s=10)
        server.recover()
        sender.recovered()
        wait_until(lambda: not box.pending(), timeout_s=10)
    finally:
        sender.stop()


def test_an_endpoint_failing_while_others_succeed_keeps_its_back_off(
    box: Outbox, sink: RestSink, server: CometStandIn
) -> None:
    """Load metrics answer 503 while metric batches go through: five successes elsewhere do
    not cut its 30 s back-off short (one retry at most: the first success since it began
    may end an outage), and its message is kept, not lost."""
    server.outage(status=503, routes={"add-load-metrics"})
    sender = Sender(box, sink, backoff=SLOW, rand=Random(0))
    box.put(load(0))
    sender.start()
    try:
        wait_until(lambda: server.count("add-load-metrics", ok_only=False) >= 1, timeout_s=10)
        for n in range(5):
            box.put(metrics(10 * n))
            sender.wake()
            wait_until(lambda n=n: len(server.metric_items()) >= 10 * (n + 1), timeout_s=10)
        assert server.count("add-load-metrics", ok_only=False) <= 2  # was: one per success
        assert box.pending() and loads_received(server) == []
    finally:
        sender.stop()


def test_the_stop_flush_does_not_wait_for_a_back_off_from_before_the_recovery(
    box: Outbox, sink: RestSink, server: CometStandIn
) -> None:
    """Back-off earned during the outage; Comet is back at the stop: the flush sends all."""
    server.outage(status=503)
    sender = Sender(box, sink, backoff=SLOW, rand=Random(0))
    box.put_many([metrics(0), load(0)])
    sender.start()
    wait_until(lambda: server.count(ok_only=False) >= 2, timeout_s=10)
    server.recover()
    sender.stop()
    started = time.monotonic()
    assert sender.flush(10, fresh=True)  # as Delivery.flush does at the stop
    assert time.monotonic() - started < 9
    assert loads_received(server) == [0]


class _GonePipe(io.StringIO):
    """stderr whose reader is gone: every write raises BrokenPipeError, as a real pipe does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_stderr_does_not_stop_the_sender(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """Logging into a pipe nobody reads loses the lines, not the sender thread."""
    from agent import log

    log.configure("info", "json", _GonePipe())
    try:
        server.fail("add-load-metrics", status=400)  # logged at ERROR: the write fails
        sender = make()
        sender.start()
        box.put(load(0))
        sender.wake()
        wait_until(lambda: box.stats().dead == 1, timeout_s=10)
        for n in range(1, 4):
            box.put(load(n))
            sender.wake()
        wait_until(lambda: loads_received(server) == [1, 2, 3], timeout_s=10)
        assert log.stream_broken() is not None
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def ram(n: int) -> Message:
    """A typed Add RAM Metrics message stamped T0 + n."""
    return Message(
        "add-ram-metrics", KEY, {"totalRam": 8, "usedRam": n, "timestamp": T0 + n}, T0 + n
    )


def test_a_404_that_passes_loses_nothing(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """A few 404s (a proxy, a deploy) back the endpoint off; no dead letter, all in order."""
    server.fail("add-load-metrics", status=404, times=3)
    box.put_many([load(0), load(1), load(2)])
    assert make().flush(15)
    assert loads_received(server) == [0, 1, 2]
    assert box.stats().dead == 0  # was: load(0) a dead letter for good


def test_a_413_splits_the_batch_and_loses_nothing(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """A merged batch too large for a proxy goes message by message; nothing is dead."""
    server.fail("log-metric-batch", status=413, times=2)
    box.put_many([metrics(0), metrics(10), metrics(20)])
    assert make().flush(15)
    assert [r.status for r in server.received(ok_only=False)][:2] == [413, 413]
    assert server.metric_items() == [item(n) for n in range(30)]
    assert box.stats().dead == 0


def test_404_everywhere_is_a_wrong_url_paused_like_a_rejected_key(
    box: Outbox, sink: RestSink, server: CometStandIn
) -> None:
    """Every endpoint answers 404: sending pauses, the fix is logged once, nothing dies."""
    server.outage(status=404)
    url = server.url.replace("/clientlib/", "/")
    sender = Sender(box, sink, backoff=FAST, rand=Random(0), url=url)
    box.put_many([metrics(0), load(0), ram(0)])
    with capture_logs() as logs:
        sender.start()
        try:
            wait_until(lambda: sender.status().paused_url, timeout_s=10)
            time.sleep(2)  # several pauses of wait_max 0.5 s
            assert box.stats().dead == 0 and box.pending() == 3
            wrong = [e for e in logs if e["event"] == "sender.url_wrong"]
            assert len(wrong) == 1 and wrong[0]["log_level"] == "error"
            assert f"{url.rstrip('/')}/clientlib/" in wrong[0]["fix"]
            assert [s.attempts for s in box.dead_letters()] == []
            server.recover()
            wait_until(lambda: not box.pending(), timeout_s=10)
        finally:
            sender.stop()
    assert not sender.status().paused_url
    assert loads_received(server) == [0]


def test_dead_letters_can_be_sent_again(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """retry_dead() puts refused messages back in line; they go once Comet takes them."""
    server.fail("add-load-metrics", status=400, times=1)
    box.put_many([load(0), load(1)])
    assert make().flush(10)
    assert box.stats().dead == 1
    assert box.retry_dead() == 1
    assert make().flush(10)
    assert sorted(loads_received(server)) == [0, 1]
    assert box.stats().dead == 0


def test_a_url_without_clientlib_is_named_at_the_start(box: Outbox, tmp_path: Path) -> None:
    """COMET_URL_OVERRIDE without /clientlib/: one warning with the URL to try, at once."""
    from agent.config import load_settings
    from agent.delivery.pipeline import Delivery

    def settings(url: str) -> object:
        env = {"COMET_URL_OVERRIDE": url}
        return load_settings(environ=env, home=tmp_path, cwd=tmp_path, system_config=tmp_path / "x")

    for url, warned in (
        ("https://comet.example.com/", True),
        ("https://c.example/clientlib/", False),
    ):
        sink = RestSink(CometClient(api_key=CANARY_KEY, url_override=url, timeout_s=3))
        with capture_logs() as logs:
            Delivery(box, sink, settings(url))  # type: ignore[arg-type]
        sink.close()
        said = [e for e in logs if e["event"] == "config.url_without_clientlib"]
        assert bool(said) is warned
        if warned:
            assert "https://comet.example.com/clientlib/" in said[0]["fix"]


def test_lingering_merges_samples_put_one_by_one(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """Samples put a moment apart share one request when the sender lingers; flush cuts it short."""
    sender = make(linger_s=30.0)
    sender.start()
    box.put(metrics(0, 1))
    sender.wake()
    wait_until(lambda: len(server.received("log-metric-batch")) == 1)
    for n in range(1, 6):  # one sample a beat, each woken at once, as the daemon does
        box.put(metrics(n, 1))
        sender.wake()
        time.sleep(0.05)
    assert len(server.received("log-metric-batch")) == 1  # the rest wait in the linger
    assert sender.flush(10)
    batches = server.received("log-metric-batch")
    assert len(batches) == 2
    stamps = [v["timestamp"] - T0 for b in batches for v in b.body["values"]]  # type: ignore[index, union-attr]
    assert stamps == list(range(6))  # every item keeps its own time, in order


def test_the_stop_flush_does_not_wait_out_a_throttle_it_cannot_end(
    box: Outbox, make: type[Sender], server: CometStandIn
) -> None:
    """A 429 asking for 60 s, a 10 s flush: it returns at once (kept), not after 10 s."""
    server.fail("log-metric-batch", status=429, headers={"Retry-After-Custom": "60"})
    sender = make()
    box.put(metrics(0))
    sender.start()
    try:
        wait_until(lambda: "log-metric-batch" in sender.status().throttled, timeout_s=10)
        started = time.monotonic()
        assert sender.flush(10.0) is False
        assert time.monotonic() - started < 3  # was: the whole 10 s
        assert box.pending() == 1  # kept for the next start, not dropped
    finally:
        sender.stop()
