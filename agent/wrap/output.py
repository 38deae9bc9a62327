"""OutputStream: a child's stdout and stderr bytes become ordered Log Output messages.

Lines. A line ends at "\\n", which stays in the item's text ("\\r\\n" too).
A bare "\\r" (a progress bar redrawing itself) sends a terminal back to the
start of the line, so what came before it on that line is what the terminal
overwrites: it is dropped, and the line goes on from the "\\r", which stays in
the text so the UI (it concatenates items by offset) overwrites as well. A
tqdm bar therefore costs one item per flush interval (its state at that
moment, sent as a partial line) and its final state, instead of one item per
redraw, which is hundreds a second in a fast loop.

Partial lines wait per stream for their newline; one still unfinished
``flush_interval_s`` after its first byte is sent as it stands (the rest of
it is a later item, as the SDK sends one item per write, wire §3.6), and
``close()`` sends whatever is left. Bytes are UTF-8, decoded with
errors="replace" (lines that needed it are counted). A line longer than
``max_line_bytes`` keeps its first ``max_line_bytes`` and ends with a
visible marker; the rest is counted and never held in memory.

Offsets: ONE counter from ``first_offset`` for stdout, stderr and ``line()``
(wire §3.6: the handshake's ``lastOffset``), given when a line is complete,
so they follow the order lines were finished in across both streams.

Threads: the two reader threads call ``feed()``; work on the hot path is a
few bytes methods per chunk, not per byte. One flush thread owned by the
stream builds the messages and calls ``put``, so a slow outbox delays
neither the child nor the passthrough until ``max_pending_bytes`` are held
(then a reader waits up to ``ROOM_WAIT_S`` for room); past ``max_pending_bytes`` waiting
or being put (twice the text, as it is encoded once more on the way, plus
``LINE_COST`` a line), new lines are dropped,
counted, and reported by a "[comet-agent]" line.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from itertools import repeat

from agent.api import bodies
from agent.errors import AgentError
from agent.message import Kind, Message, now_ms

ENDPOINT = "log-output"
# What one line costs in memory besides its text, from its queue entry to its message's item
# (a str, a tuple, an int or two, then a dict): ten-byte lines would otherwise hold ~20x
# their text (270 MB of output took the wrapper past 800 MB).
LINE_COST = 384
# At the cap, a reader waits this long for the flush thread to make room (the child's pipe
# fills and it waits too: a burst is slowed, not lost) before lines are dropped.
ROOM_WAIT_S = 2.0
_Pending = tuple[str, bool, int, int]  # text, stderr, offset, timestamp_ms


@dataclasses.dataclass
class OutputStats:
    """Counters of what the stream has seen and done."""

    lines: int = 0  # items given an offset (agent lines included)
    bytes: int = 0  # bytes fed
    truncated_lines: int = 0
    cut_bytes: int = 0
    replaced_lines: int = 0  # lines that were not valid UTF-8
    dropped_lines: int = 0  # not sent: the outbox fell behind or refused them


class _Partial:
    """The unfinished line of one stream."""

    __slots__ = ("buf", "cr_last", "cut", "kept", "last_ms", "since")

    def __init__(self) -> None:
        self.buf = bytearray()  # kept bytes not sent yet
        self.kept = 0  # bytes of this line counted against max_line_bytes, sent ones included
        self.cut = 0  # bytes of this line dropped past max_line_bytes
        self.cr_last = False  # the last byte this line got was "\r" (kept, or cut past the limit)
        self.since: float | None = None  # monotonic time of the first byte not sent yet
        self.last_ms = 0  # when the last byte arrived

    def reset(self) -> None:
        """Forget the line (it was finished, or a "\\r" started it over)."""
        self.buf = bytearray()  # a new object: .clear() may keep a 1 MB allocation
        self.kept = 0
        self.cut = 0
        self.cr_last = False


class OutputStream:
    """Split a child's output into lines with offsets and hand them to `put` in batches."""

    def __init__(
        self,
        put: Callable[[Sequence[Message]], object],
        experiment_key: str,
        *,
        batch_lines: int = 500,
        max_line_bytes: int = 1_000_000,
        flush_interval_s: float = 2.0,
        context: str | None = None,
        first_offset: int = 0,
        clock: Callable[[], int] = now_ms,
        max_pending_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._put = put
        self._key = experiment_key
        self._batch = batch_lines
        self._max = max_line_bytes
        self._interval_s = flush_interval_s
        self._context = context
        self._clock = clock
        self._max_pending = max_pending_bytes
        self._offset = first_offset
        self._stats = OutputStats()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._overflowing = False  # a wait for room timed out: drop until half is free
        self._partials = {False: _Partial(), True: _Partial()}
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._dropped_unreported = 0
        self._flush_now = False
        self._closed = False
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="output-flush", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> OutputStats:
        """A copy of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    @property
    def next_offset(self) -> int:
        """The offset the next line will get."""
        with self._lock:
            return self._offset

    def feed(self, data: bytes, *, stderr: bool) -> None:
        """Take raw bytes the child wrote on stdout (or stderr); ignored after close()."""
        if not data:
            return
        now = self._clock()  # every line finished by this chunk arrived now
        with self._lock:
            if self._closed:
                return
            self._stats.bytes += len(data)
            part = self._partials[stderr]
            first = data.find(b"\n")
            if first < 0:
                self._extend(part, data, 0, len(data), now)
                return
            start = 0  # where whole lines begin
            if part.kept:  # a line is in progress: this chunk's first "\n" ends it
                self._extend(part, data, 0, first, now)
                self._emit([self._finish(part)], stderr, now)
                start = first + 1
            last = data.rfind(b"\n")
            if last >= start:
                self._middle(part, data, start, last + 1, stderr, now)
            if last + 1 < len(data):
                self._extend(part, data, last + 1, len(data), now)

    def line(self, text: str, *, stderr: bool = False) -> None:
        """Add a line of the agent's own ("[comet-agent] ..."), on the same offset counter."""
        with self._lock:
            if not self._closed:
                self._emit([text if text.endswith("\n") else text + "\n"], stderr, self._clock())

    def flush(self) -> None:
        """Ask the flush thread to send the queue now (and partial lines past their interval)."""
        with self._lock:
            self._flush_now = True
        self._wake.set()

    def close(self) -> None:
        """Send everything, partial lines included, and stop the flush thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._drain(final=True, timed=True)

    def __enter__(self) -> OutputStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the hot path (called with the lock held) ----------------------------------------------

    def _extend(self, part: _Partial, data: bytes, start: int, end: int, now: int) -> None:
        """Append data[start:end], which holds no "\\n", to the line in progress."""
        if start >= end:
            return
        cr = data.rfind(b"\r", start, end - 1)  # a "\r" with more text after it on this line
        if cr >= 0:
            part.reset()
            start = cr
        elif part.cr_last:  # the "\r" that ended the last chunk was not "\r\n"
            part.reset()
            part.buf += b"\r"
            part.kept = 1
        room = self._max - part.kept
        size = end - start
        if size <= room:
            part.buf += memoryview(data)[start:end]
            part.kept += size
        else:
            take = _boundary(data, start, start + room) - start if room > 0 else 0
            part.buf += memoryview(data)[start : start + take]
            part.kept = self._max  # closed: nothing more of this line is kept
            part.cut += size - take
            self._stats.cut_bytes += size - take
        # Not buf.endswith(b"\r"): past the limit the "\r" is cut, and still starts the line over.
        part.cr_last = data[end - 1] == 0x0D
        if part.since is None:
            part.since = time.monotonic()
        part.last_ms = now

    def _finish(self, part: _Partial) -> str:
        """Return the finished line with its "\\n", and start a new one."""
        text = self._decode(part.buf)
        if part.cut:
            text += _marker(part.cut)
            self._stats.truncated_lines += 1
        part.reset()
        part.since = None
        return text + "\n"

    def _middle(
        self, part: _Partial, data: bytes, start: int, end: int, stderr: bool, now: int
    ) -> None:
        """Emit the whole lines in data[start:end], which ends with "\\n"."""
        if end - start <= self._max:  # then no line in it can be too long
            try:
                text = data[start:end].decode("utf-8")
            except UnicodeDecodeError:
                pass  # the line-by-line path below replaces the bad bytes
            else:
                texts = text.split("\n")
                texts.pop()  # the empty string after the last "\n"
                if "\r" in text:
                    self._emit([_collapse(t) for t in texts], stderr, now, len(text))
                else:
                    self._emit([t + "\n" for t in texts], stderr, now, len(text))
                return
        while start < end:  # rare: invalid UTF-8, or a huge chunk; same rules, line by line
            nl = data.find(b"\n", start, end)
            self._extend(part, data, start, nl, now)
            self._emit([self._finish(part)], stderr, now)
            start = nl + 1

    def _emit(
        self, texts: list[str], stderr: bool, now: int, size: int = -1, *, capped: bool = True
    ) -> None:
        """Give finished lines their offsets and queue them (or drop them past the cap)."""
        count = len(texts)
        if size < 0:
            size = sum(map(len, texts))
        size = 2 * size + LINE_COST * count
        if capped and self._pending_bytes + size > self._max_pending:
            self._wait_for_room(size)
        if capped and self._pending_bytes + size > self._max_pending:
            self._overflowing = True
            self._stats.dropped_lines += count
            self._dropped_unreported += count
            return
        first = self._offset
        self._pending.extend(zip(texts, repeat(stderr), range(first, first + count), repeat(now)))
        self._offset += count
        self._pending_bytes += size
        self._stats.lines += count
        if len(self._pending) >= self._batch and not self._wake.is_set():
            self._wake.set()

    def _wait_for_room(self, size: int) -> None:
        """Wait (the lock released) for the flush thread to take lines, once per overflow."""
        if self._overflowing or self._stopping or threading.current_thread() is self._thread:
            return
        deadline = time.monotonic() + ROOM_WAIT_S
        while self._pending_bytes + size > self._max_pending and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.set()
            self._room.wait(min(left, 0.1))

    def _decode(self, data: bytes | bytearray) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self._stats.replaced_lines += 1
            return data.decode("utf-8", "replace")

    # -- the flush thread -----------------------------------------------------------------------

    def _run(self) -> None:
        due = time.monotonic() + self._interval_s
        while not self._stopping:
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stopping:
                return  # close() drains, after this thread has ended: one putter at a time
            now = time.monotonic()
            timed = now >= due
            if timed:
                due = now + self._interval_s
            self._drain(final=False, timed=timed)

    def _drain(self, *, final: bool, timed: bool) -> None:
        """Cut the queue into messages and put them (full batches only, unless timed)."""
        with self._lock:
            timed = timed or self._flush_now
            self._flush_now = False
            if timed:
                self._send_old_partials(final)
            room = final or self._pending_bytes < self._max_pending // 2
            if self._dropped_unreported and room:
                dropped, self._dropped_unreported = self._dropped_unreported, 0
                self._emit(
                    [f"[comet-agent] {dropped:,} output lines dropped: the outbox fell behind\n"],
                    False,
                    self._clock(),
                    capped=False,  # one line, and the only trace of the loss
                )
            whole = len(self._pending) - len(self._pending) % self._batch
            if timed and self._pending:
                whole = len(self._pending)
            taken = self._pending[:whole]
            del self._pending[:whole]
        if not taken:
            return
        # Still counted against the cap until put: the messages built here hold it all again.
        held = 2 * sum(len(p[0]) for p in taken) + LINE_COST * len(taken)
        try:
            messages = [
                self._message(taken[i : i + self._batch]) for i in range(0, len(taken), self._batch)
            ]
            self._put(messages)
        except AgentError as exc:  # the outbox refused: count the loss and keep going
            with self._lock:
                self._stats.dropped_lines += len(taken)
            from agent import log

            log.get_logger().warning("output.dropped", lines=len(taken), error=str(exc))
        finally:
            with self._lock:
                self._pending_bytes -= held
                if self._pending_bytes < self._max_pending // 2:
                    self._overflowing = False
                self._room.notify_all()

    def _send_old_partials(self, final: bool) -> None:
        """Queue partial lines that waited a flush interval (all of them when final)."""
        now = time.monotonic()
        for stderr, part in self._partials.items():
            if part.since is None or not (final or now - part.since >= self._interval_s):
                continue
            if final:
                text = self._decode(part.buf) + (_marker(part.cut) if part.cut else "")
                self._stats.truncated_lines += 1 if part.cut else 0
                part.reset()
            else:
                whole = _boundary(part.buf, 0, len(part.buf))  # hold back a split character
                text = self._decode(part.buf[:whole])
                del part.buf[:whole]
            part.since = time.monotonic() if part.buf else None
            if text:
                self._emit([text], stderr, part.last_ms)

    def _message(self, batch: list[_Pending]) -> Message:
        items = [
            bodies.output_line(text, stderr=err, offset=off, timestamp_ms=ts)
            for text, err, off, ts in batch
        ]
        return Message(
            endpoint=ENDPOINT,
            experiment_key=self._key,
            body=bodies.output(items, self._context),
            created_ms=batch[-1][3],
            kind=Kind.OUTPUT,
        )


def _collapse(line: str) -> str:
    """Return a finished line without what a bare "\\r" in it overwrites, with its "\\n"."""
    if line.endswith("\r"):
        body, end = line[:-1], "\r\n"
    else:
        body, end = line, "\n"
    cr = body.rfind("\r")
    return (body[cr:] if cr >= 0 else body) + end


def _boundary(data: bytes | bytearray, start: int, end: int) -> int:
    """Return the largest cut <= end that does not split a UTF-8 character of data[start:]."""
    i = end
    while i > start and end - i < 3 and (data[i - 1] & 0xC0) == 0x80:
        i -= 1  # step back over continuation bytes
    if i > start and data[i - 1] >= 0xC0:  # a lead byte: is its character complete?
        lead = data[i - 1]
        need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if end - (i - 1) < need:
            return i - 1
    return end


def _marker(cut: int) -> str:
    return f" … [comet-agent: {cut:,} bytes cut]"
