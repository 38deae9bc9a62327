"""Progress of a long command: one updating line on a terminal, plain periodic lines off one.

The line says how far, how much, how fast and how long is left, in the
units of the closing summary (``agent.human.amount``):
``uploading a.zip:  50% · 12 messages · 3.0 MB · 1.5 MB/s · 0:02 left``.
A dozen lines of our own rather than tqdm or rich: the off-terminal form (one
plain line every few seconds for journald and CI logs) is what matters here,
and neither would save code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from agent import human

PLAIN_PERIOD_S = 5.0  # off a terminal (a CI log, journald): one line this often, at most
TTY_PERIOD_S = 0.1
MIN_RATE_S = 1.0  # below this much elapsed time a rate is noise: not shown


class Progress:
    """Report how far an item (an archive) has got, in positions out of a known total."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        try:
            self._tty = stream.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._name = ""
        self._total = 0
        self._last = -1e9
        self._started = 0.0
        self._drawn = False

    def start(self, name: str, total: int) -> None:
        """Begin a new item of `total` positions."""
        self._name, self._total, self._last = name, max(total, 1), -1e9
        self._started = self._clock()

    def update(self, position: int, messages: int, size_bytes: int, *, force: bool = False) -> None:
        """Say how far the item is; printed at most once per period."""
        now = self._clock()
        period = TTY_PERIOD_S if self._tty else PLAIN_PERIOD_S
        if not force and now - self._last < period:
            return
        self._last = now
        percent = min(100, position * 100 // self._total)
        parts = [f"{messages:,} messages", human.amount(size_bytes)]
        took = now - self._started
        if took >= MIN_RATE_S:
            parts.append(f"{human.amount(size_bytes / took)}/s")
            if 0 < position < self._total:
                parts.append(f"{_clock_time(took * (self._total - position) / position)} left")
        text = f"uploading {self._name}: {percent:3d}% · {' · '.join(parts)}"
        if self._tty:
            self._stream.write("\r\x1b[K" + text)
            self._drawn = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def note(self, text: str) -> None:
        """Print a line of its own (ending an updating line first)."""
        self.finish()
        self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the updating line, if one is drawn."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


def _clock_time(seconds: float) -> str:
    """0:42, 12:05, 1:02:03: what a progress bar's ETA looks like."""
    s = round(seconds)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
