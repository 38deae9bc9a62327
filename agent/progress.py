"""Progress of a long command: one updating line on a terminal, plain periodic lines off one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

PLAIN_PERIOD_S = 5.0  # off a terminal (a CI log, journald): one line this often, at most
TTY_PERIOD_S = 0.1


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
        self._drawn = False

    def start(self, name: str, total: int) -> None:
        """Begin a new item of `total` positions."""
        self._name, self._total, self._last = name, max(total, 1), -1e9

    def update(self, position: int, messages: int, size_bytes: int, *, force: bool = False) -> None:
        """Say how far the item is; printed at most once per period."""
        now = self._clock()
        period = TTY_PERIOD_S if self._tty else PLAIN_PERIOD_S
        if not force and now - self._last < period:
            return
        self._last = now
        percent = min(100, position * 100 // self._total)
        text = (
            f"uploading {self._name}: {percent:3d}% ({messages:,} messages, "
            f"{size_bytes / 1e6:.1f} MB)"
        )
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
