"""OutputStream: a child's bytes become ordered Log Output lines, batched into messages."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence

import pytest

from agent.errors import OutboxError
from agent.message import Kind, Message
from agent.wrap.output import LINE_COST, OutputStream
from tests.helpers import wait_until

KEY = "0123456789abcdef0123456789abcdef"


class Collector:
    """A put that keeps every message (thread-safe: the flush thread calls it)."""

    def __init__(self) -> None:
        self.calls: list[list[Message]] = []
        self._lock = threading.Lock()

    def __call__(self, messages: Sequence[Message]) -> None:
        with self._lock:
            self.calls.append(list(messages))

    @property
    def messages(self) -> list[Message]:
        with self._lock:
            return [m for call in self.calls for m in call]

    @property
    def items(self) -> list[dict[str, object]]:
        return [item for m in self.messages for item in m.body["outputLines"]]  # type: ignore[attr-defined]

    @property
    def texts(self) -> list[str]:
        return [str(item["output"]) for item in self.items]


@pytest.fixture(name="put")
def _put() -> Collector:
    return Collector()


@pytest.fixture(name="stream")
def _stream(put: Collector) -> Iterator[OutputStream]:
    """A stream that only flushes at close (or by count), its clock fixed at 1,700,000,000,000."""
    stream = OutputStream(put, KEY, flush_interval_s=60, clock=lambda: 1_700_000_000_000)
    yield stream
    stream.close()


def test_lines_split_across_chunks_keep_their_newline(stream: OutputStream, put: Collector) -> None:
    """Partial lines wait for their newline across chunk boundaries; "\\r\\n" stays whole."""
    for chunk in (b"hel", b"lo\nwor", b"ld\n\n", b"crlf\r", b"\nnext\r\n"):
        stream.feed(chunk, stderr=False)
    stream.close()
    assert put.texts == ["hello\n", "world\n", "\n", "crlf\r\n", "next\r\n"]
    assert [i["offset"] for i in put.items] == [0, 1, 2, 3, 4]
    assert {i["localTimestamp"] for i in put.items} == {1_700_000_000_000}


def test_message_shape(put: Collector) -> None:
    """One log-output message of kind OUTPUT, body built by bodies.output with the context."""
    with OutputStream(put, KEY, context="train", first_offset=41, clock=lambda: 5) as stream:
        stream.feed(b"x\n", stderr=True)
    (msg,) = put.messages
    assert msg.endpoint == "log-output"
    assert msg.experiment_key == KEY
    assert msg.kind is Kind.OUTPUT
    assert msg.created_ms == 5
    assert msg.body == {
        "outputLines": [{"stderr": True, "output": "x\n", "localTimestamp": 5, "offset": 41}],
        "runContext": "train",
    }


def test_each_line_stamped_when_its_last_byte_arrived(put: Collector) -> None:
    """A line finished by a later chunk carries that chunk's time."""
    now = iter([100, 200, 300])
    with OutputStream(put, KEY, clock=lambda: next(now)) as stream:
        stream.feed(b"a\nb", stderr=False)
        stream.feed(b"b\nc\n", stderr=False)
        stream.feed(b"d\n", stderr=True)
    assert [(i["output"], i["localTimestamp"]) for i in put.items] == [
        ("a\n", 100),
        ("bb\n", 200),
        ("c\n", 200),
        ("d\n", 300),
    ]


def test_bare_carriage_return_keeps_only_what_a_terminal_shows(
    stream: OutputStream, put: Collector
) -> None:
    """Progress-bar redraws collapse to the last state, whether in one chunk or many."""
    for chunk in (b"\r 10%|#", b"\r 20%|##", b"\r", b"100%|###\n", b"a\rb\rc\n", b"x\r\r\n"):
        stream.feed(chunk, stderr=True)
    stream.close()
    assert put.texts == ["\r100%|###\n", "\rc\n", "\r\r\n"]
    assert [i["stderr"] for i in put.items] == [True, True, True]


def test_progress_bar_appears_once_per_flush_interval(put: Collector) -> None:
    """An unfinished line is sent as it stands after a flush interval; its end follows later."""
    with OutputStream(put, KEY, flush_interval_s=0.05) as stream:
        stream.feed(b"\r 10%|#", stderr=False)
        wait_until(lambda: put.texts == ["\r 10%|#"], timeout_s=5)
        stream.feed(b"\r 20%|##\r100%|###\n", stderr=False)
    assert put.texts == ["\r 10%|#", "\r100%|###\n"]
    assert [i["offset"] for i in put.items] == [0, 1]


def test_partial_line_never_splits_a_character(put: Collector) -> None:
    """A partial line sent on the timer holds back the first bytes of a split character."""
    with OutputStream(put, KEY, flush_interval_s=0.05) as stream:
        stream.feed("é".encode() + b"\xe2\x82", stderr=False)  # "€" is e2 82 ac
        wait_until(lambda: put.texts == ["é"], timeout_s=5)
        stream.feed(b"\xac\n", stderr=False)
    assert put.texts == ["é", "€\n"]
    assert stream.stats.replaced_lines == 0


def test_close_sends_the_unfinished_tail(stream: OutputStream, put: Collector) -> None:
    """close() sends partial lines as written, with no invented newline; later feeds are ignored."""
    stream.feed(b"done\nno newline", stderr=False)
    stream.feed(b"err tail", stderr=True)
    stream.close()
    stream.feed(b"late\n", stderr=False)
    assert put.texts == ["done\n", "no newline", "err tail"]
    assert [i["stderr"] for i in put.items] == [False, False, True]


def test_agent_lines_share_the_offset_counter(stream: OutputStream, put: Collector) -> None:
    """line() takes the next offset between the child's lines and ends with a newline."""
    stream.feed(b"a\n", stderr=False)
    stream.line("[comet-agent] GPU 1 lost")
    stream.feed(b"b\n", stderr=True)
    stream.line("[comet-agent] ready\n", stderr=True)
    stream.close()
    assert [(i["offset"], i["stderr"], i["output"]) for i in put.items] == [
        (0, False, "a\n"),
        (1, False, "[comet-agent] GPU 1 lost\n"),
        (2, True, "b\n"),
        (3, True, "[comet-agent] ready\n"),
    ]
    assert stream.next_offset == 4


def test_fifty_megabyte_line_is_cut_in_bounded_memory(put: Collector) -> None:
    """Only max_line_bytes of a line in progress is held; the item ends with the marker."""
    chunk = b"x" * 65_536
    count = 50_000_000 // len(chunk) + 1  # 50,003,968 bytes
    stream = OutputStream(put, KEY, max_line_bytes=1_000_000, flush_interval_s=60)
    tracemalloc.start()
    try:
        for _ in range(count):
            stream.feed(chunk, stderr=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stream.feed(b"\nafter\n", stderr=False)
    stream.close()
    total = count * len(chunk)
    marker = f" … [comet-agent: {total - 1_000_000:,} bytes cut]"
    assert marker == " … [comet-agent: 49,003,968 bytes cut]"
    assert put.texts == ["x" * 1_000_000 + marker + "\n", "after\n"]
    assert peak < 4_000_000
    stats = stream.stats
    assert (stats.truncated_lines, stats.cut_bytes, stats.bytes) == (
        1,
        total - 1_000_000,
        total + 7,
    )


def test_cut_falls_on_a_character_boundary(put: Collector) -> None:
    """A cut never leaves half a UTF-8 character (which would read as a replacement)."""
    with OutputStream(put, KEY, max_line_bytes=80) as small:
        small.feed("é".encode() * 50 + b"\n", stderr=False)  # 100 bytes; 80 is 40 characters
        small.feed(("a" + "é" * 50 + "\n").encode(), stderr=False)  # the 80th byte starts an "é"
    assert put.texts == [
        "é" * 40 + " … [comet-agent: 20 bytes cut]\n",
        "a" + "é" * 39 + " … [comet-agent: 22 bytes cut]\n",
    ]
    assert small.stats.replaced_lines == 0


def test_invalid_utf8_and_binary_never_crash(stream: OutputStream, put: Collector) -> None:
    """Bad bytes become U+FFFD; each line that needed it is counted once."""
    stream.feed(b"ok\n\xff\xfe bad\nfine \xe2\x82\xac\n", stderr=False)
    stream.feed(b"\x00\x01\x7f\n\xc3", stderr=False)
    stream.feed(b"(\n", stderr=False)  # c3 28: a lead byte with no continuation
    stream.close()
    assert put.texts == ["ok\n", "\ufffd\ufffd bad\n", "fine €\n", "\x00\x01\x7f\n", "\ufffd(\n"]
    assert stream.stats.replaced_lines == 2
    assert stream.stats.lines == 5


def test_every_byte_value_survives(stream: OutputStream, put: Collector) -> None:
    """All 256 byte values go through: nothing lost but the undecodable ones (as U+FFFD)."""
    data = bytes(range(256)) * 3
    for i in range(0, len(data), 100):
        stream.feed(data[i : i + 100], stderr=False)
    stream.close()
    expected = data.decode("utf-8", "replace")
    # the "\r" before each "\x0e..." is bare: what precedes it on its line is overwritten
    lines = [line + "\n" for line in expected.split("\n")[:-1]] + [expected.split("\n")[-1]]
    assert put.texts == [line[line.rfind("\r") :] if "\r" in line else line for line in lines]


def test_batches_by_count(put: Collector) -> None:
    """A full batch goes at once; the rest waits for the timer or close()."""
    with OutputStream(put, KEY, batch_lines=500, flush_interval_s=60) as stream:
        stream.feed(b"".join(b"%d\n" % i for i in range(1200)), stderr=False)
        wait_until(lambda: len(put.messages) == 2, timeout_s=5)
        assert [len(m.body["outputLines"]) for m in put.messages] == [500, 500]  # type: ignore[arg-type]
    assert [len(m.body["outputLines"]) for m in put.messages] == [500, 500, 200]  # type: ignore[arg-type]
    assert put.texts == [f"{i}\n" for i in range(1200)]


def test_batches_by_time(put: Collector) -> None:
    """Without close(), lines go within a flush interval; flush() sends at once."""
    with OutputStream(put, KEY, flush_interval_s=0.05) as stream:
        stream.feed(b"one\ntwo\n", stderr=False)
        wait_until(lambda: put.texts == ["one\n", "two\n"], timeout_s=5)
    slow = Collector()
    with OutputStream(slow, KEY, flush_interval_s=60) as stream:
        stream.feed(b"three\n", stderr=True)
        stream.flush()
        wait_until(lambda: slow.texts == ["three\n"], timeout_s=5)


def test_two_threads_share_one_ordered_counter(put: Collector) -> None:
    """Mixed stdout and stderr from two threads: offsets 0..N-1 once each, in order."""
    per_stream = 20_000

    def writer(stderr: bool) -> None:
        tag = b"err" if stderr else b"out"
        data = b"".join(b"%s %d\n" % (tag, i) for i in range(per_stream))
        for i in range(0, len(data), 4_093):  # a prime: chunks cut lines anywhere
            stream.feed(data[i : i + 4_093], stderr=stderr)

    with OutputStream(put, KEY, batch_lines=300, flush_interval_s=0.05) as stream:
        threads = [threading.Thread(target=writer, args=(flag,)) for flag in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    items = put.items
    assert [i["offset"] for i in items] == list(range(2 * per_stream))
    for flag, tag in ((False, "out"), (True, "err")):
        mine = [i["output"] for i in items if i["stderr"] is flag]
        assert mine == [f"{tag} {n}\n" for n in range(per_stream)]
    assert all(len(m.body["outputLines"]) <= 300 for m in put.messages)  # type: ignore[arg-type]


def test_a_million_lines_in_order_within_seconds() -> None:
    """1,000,000 short lines in 64 KiB chunks: offsets exactly 0..999,999, in order."""
    data = b"".join(b"line %d\n" % i for i in range(1_000_000))
    expected = 0
    bad: list[str] = []

    def check(messages: Sequence[Message]) -> None:
        nonlocal expected
        for msg in messages:
            for item in msg.body["outputLines"]:  # type: ignore[attr-defined]
                if item["offset"] != expected or item["output"] != f"line {expected}\n":
                    bad.append(f"{item['offset']} {item['output']!r}")
                expected += 1

    begun = time.monotonic()
    # Order and speed, not the cap: room for every line even if the flush thread lags.
    with OutputStream(check, KEY, max_pending_bytes=1 << 30) as stream:
        for i in range(0, len(data), 65_536):
            stream.feed(data[i : i + 65_536], stderr=False)
    elapsed_s = time.monotonic() - begun
    assert bad == []
    assert expected == 1_000_000
    assert stream.stats.lines == 1_000_000
    assert elapsed_s < 30, f"{elapsed_s:.1f} s"  # about 2 s on one free core


def test_backlog_past_the_cap_is_dropped_and_reported(put: Collector) -> None:
    """A stuck outbox costs lines, counted and reported by an agent line, not memory."""
    entered, release = threading.Event(), threading.Event()

    def stuck(messages: Sequence[Message]) -> None:
        entered.set()
        release.wait(10)
        put(messages)

    cap = 43 * (2 * 3 + LINE_COST)  # the batch being put counts until it is put
    with OutputStream(stuck, KEY, batch_lines=10, max_pending_bytes=cap) as stream:
        stream.feed(b"".join(b"%02d\n" % i for i in range(10)), stderr=False)  # a full batch
        wait_until(entered.is_set, timeout_s=5)
        for i in range(10, 50):  # 2 x 3 bytes and LINE_COST each: 33 more fit, 7 do not
            stream.feed(b"%02d\n" % i, stderr=False)
        release.set()
    assert stream.stats.dropped_lines == 7
    assert put.texts == [
        *(f"{i:02d}\n" for i in range(43)),
        "[comet-agent] 7 output lines dropped: the outbox fell behind\n",
    ]
    assert [i["offset"] for i in put.items] == list(range(44))


def test_a_refusing_outbox_loses_only_its_batch(put: Collector) -> None:
    """put raising an AgentError counts that batch as dropped; later lines still go."""
    calls = 0

    def flaky(messages: Sequence[Message]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OutboxError("outbox.sqlite: disk full; free space")
        put(messages)

    with OutputStream(flaky, KEY, flush_interval_s=0.05) as stream:
        stream.feed(b"lost\n", stderr=False)
        wait_until(lambda: calls == 1, timeout_s=5)
        stream.feed(b"kept\n", stderr=False)
    assert put.texts == ["kept\n"]
    assert stream.stats.dropped_lines == 1
