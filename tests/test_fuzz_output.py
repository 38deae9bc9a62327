"""Fuzzing the output stream: random byte chunks from one or two threads become exact lines.

The reference for one stream's bytes B (all its chunks joined): split B at
"\\n"; for each line L (without its "\\n") keep what a terminal would show,
``L[L.rfind("\\r", 0, len(L) - 1):]`` when L holds a "\\r" with more after
it, else L; decode that with UTF-8 ("replace"); and, when the kept bytes
pass ``max_line_bytes``, keep a prefix of k bytes, ``max_line_bytes - 3 <=
k <= max_line_bytes`` (a split character held back), followed by the marker
`` … [comet-agent: N bytes cut]`` with N the bytes left out. Each finished
line ends with "\\n"; an unfinished last line is sent as it stands at close,
unless it is empty.

The properties, with the flush interval long enough that no partial line is
sent on the timer:

- the items of each stream, in offset order, are exactly its reference
  lines, however the bytes were cut into chunks (empty chunks included);
- the offsets, in the order the messages were put, are exactly 0..n-1;
- nothing is dropped (``stats.dropped_lines == 0``), cuts are counted, and
  no exception escapes ``feed`` or ``close``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from hypothesis import example, given
from hypothesis import strategies as st

from agent.message import Message
from agent.wrap.output import OutputStream
from tests.fuzzing import fuzz

KEY = "0123456789abcdef0123456789abcdef"
MARKER = re.compile(r" … \[comet-agent: ([\d,]+) bytes cut\]$")


class Collector:
    """A put that keeps every message (the flush thread calls it)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    def __call__(self, messages: Sequence[Message]) -> None:
        with self._lock:
            self.messages.extend(messages)

    def items(self) -> list[dict[str, object]]:
        """Every output item, in the order the messages were put."""
        return [item for m in self.messages for item in m.body["outputLines"]]  # type: ignore[attr-defined]


def shown(line: bytes) -> bytes:
    """What a terminal shows of one line: from its last "\\r" that has more after it."""
    cr = line.rfind(b"\r", 0, len(line) - 1)
    return line[cr:] if cr >= 0 else line


def check_line(text: str, line: bytes, limit: int, finished: bool) -> None:
    """`text` is the reference rendering of `line` (without its newline)."""
    kept = shown(line)
    end = "\n" if finished else ""
    if len(kept) <= limit:
        assert text == kept.decode("utf-8", "replace") + end, (text, line)
        return
    body = text.removesuffix(end)
    found = MARKER.search(body)
    assert found is not None, (text, line)
    cut = int(found.group(1).replace(",", ""))
    k = len(kept) - cut
    assert limit - 3 <= k <= limit, (k, limit, text)
    assert body[: found.start()] == kept[:k].decode("utf-8", "replace"), (text, line)


def check_stream(texts: list[str], data: bytes, limit: int) -> None:
    """One stream's items against the reference of its bytes."""
    *full, last = data.split(b"\n")
    expected = len(full) + (1 if shown(last) else 0)
    assert len(texts) == expected, (texts, data)
    for text, line in zip(texts, full, strict=False):
        check_line(text, line, limit, finished=True)
    if shown(last):
        check_line(texts[-1], last, limit, finished=False)


CHUNK = st.one_of(
    st.binary(max_size=24),
    st.sampled_from(
        [b"", b"\n", b"\r", b"\r\n", b"\n\n", b"\xff\xfe", b"\xe2\x82", b"\xac", "é€😀".encode(),
         b"a\rb", b"\rx\r", b"x" * 300]
    ),
    st.text(max_size=12).map(str.encode),
)  # fmt: skip
HUGE = st.builds(
    lambda n, tail: b"y" * n + tail,
    st.integers(100_000, 300_000),
    st.sampled_from([b"", b"\n", b"\r", b"\rz\n"]),
)


def run_stream(
    chunks: dict[bool, list[bytes]], *, limit: int, batch: int, threads: bool
) -> tuple[Collector, OutputStream]:
    """Feed each stream's chunks (from its own thread when `threads`), then close."""
    put = Collector()
    stream = OutputStream(
        put, KEY, batch_lines=batch, max_line_bytes=limit, flush_interval_s=600, clock=lambda: 7
    )
    if threads:
        workers = [
            threading.Thread(target=lambda e=err: [stream.feed(c, stderr=e) for c in chunks[e]])
            for err in (False, True)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    else:
        for err in (False, True):
            for chunk in chunks[err]:
                stream.feed(chunk, stderr=err)
    stream.close()
    return put, stream


def check_all(
    put: Collector, stream: OutputStream, chunks: dict[bool, list[bytes]], limit: int
) -> None:
    """Offsets 0..n-1 in put order; each stream's items are its reference; nothing dropped."""
    items = put.items()
    assert [i["offset"] for i in items] == list(range(len(items)))
    for err in (False, True):
        texts = [str(i["output"]) for i in items if i["stderr"] is err]
        check_stream(texts, b"".join(chunks[err]), limit)
    stats = stream.stats
    assert stats.dropped_lines == 0
    assert stats.lines == len(items)
    assert stats.bytes == sum(len(c) for cs in chunks.values() for c in cs)


STREAMS = st.fixed_dictionaries(
    {False: st.lists(CHUNK, max_size=12), True: st.lists(CHUNK, max_size=12)}
)


@fuzz(250)
@given(chunks=STREAMS, batch=st.integers(1, 6), threads=st.booleans())
@example(
    chunks={False: [b"a\r", b"\r", b"b\n"], True: [b"\xe2\x82", b"\xac\n"]}, batch=1, threads=False
)
def test_lines_and_offsets_are_exact(
    chunks: dict[bool, list[bytes]], batch: int, threads: bool
) -> None:
    """No line limit in reach: every stream's items are exactly its reference lines."""
    put, stream = run_stream(chunks, limit=1_000_000, batch=batch, threads=threads)
    check_all(put, stream, chunks, 1_000_000)


@fuzz(250)
@given(chunks=STREAMS, limit=st.integers(1, 40), batch=st.integers(1, 6), threads=st.booleans())
@example(chunks={False: [b"A" * 100 + b"\r", b"B\n"], True: []}, limit=80, batch=1, threads=False)
@example(
    chunks={False: [b"x" * 30 + "€".encode() + b"\n"], True: []}, limit=31, batch=1, threads=False
)
@example(chunks={False: [], True: [b"\r", b"\x00", b"\x00"]}, limit=1, batch=1, threads=False)
def test_long_lines_are_cut_with_a_counted_marker(
    chunks: dict[bool, list[bytes]], limit: int, batch: int, threads: bool
) -> None:
    """A small line limit: lines past it keep a prefix and say how many bytes were cut."""
    put, stream = run_stream(chunks, limit=limit, batch=batch, threads=threads)
    check_all(put, stream, chunks, limit)


@fuzz(8)
@given(
    chunks=st.fixed_dictionaries(
        {False: st.lists(HUGE | CHUNK, max_size=4), True: st.lists(HUGE, max_size=2)}
    ),
    threads=st.booleans(),
)
def test_huge_lines(chunks: dict[bool, list[bytes]], threads: bool) -> None:
    """Lines of hundreds of kilobytes, whole or cut at 150,000 bytes."""
    for limit in (1_000_000, 150_000):
        put, stream = run_stream(chunks, limit=limit, batch=500, threads=threads)
        check_all(put, stream, chunks, limit)


# -- regressions found by the properties above ---------------------------------------------------


def test_a_cut_carriage_return_still_starts_the_line_over() -> None:
    """A "\\r" that fell past the line limit still sends the terminal back: same as one chunk."""
    for chunks in (
        [b"A" * 100 + b"\rB\n"],
        [b"A" * 100 + b"\r", b"B\n"],
        [b"A" * 100, b"\r", b"B\n"],
    ):
        put, _ = run_stream({False: chunks, True: []}, limit=80, batch=1, threads=False)
        assert [i["output"] for i in put.items()] == ["\rB\n"], chunks
