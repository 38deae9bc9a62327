"""structlog set-up: JSON off a terminal, console on one, the API key redacted everywhere.

Log to stderr and let journald or the container runtime route it. Every
event is ``area.what_happened`` with snake_case keys that carry their unit.
The redaction runs twice: on the event's values (what ``capture_logs`` sees)
and on the rendered line (which also covers tracebacks and stdlib loggers).

structlog is imported at the first line logged, not with this module: it
pulls in asyncio, and ``comet-agent run`` should start the command first.
``configure()`` in a fresh process only records the set-up (and routes the
stdlib loggers to a handler that applies it when it first formats a line);
where structlog is loaded already it applies it at once.

A log line that cannot be written (stderr's reader gone: ``BrokenPipeError``;
a closed or full stream) is dropped, never raised into the thread that logged
it: the sender must not die of it. ``stream_broken()`` says it happened.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, TextIO, cast

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "***"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_secrets: set[str] = set()  # the one global: set by the entry point, read by the processors
# The set-up configure() was asked for and not yet applied: (level, format, stream, handler).
_pending: tuple[int, str, TextIO, logging.Handler] | None = None
_pending_lock = threading.Lock()
_broken: str | None = None  # why the log stream failed, if it did
_debug_off = False  # configure() chose a level above debug: .debug() returns at once


class _SafeStream:
    """A text stream whose write and flush never raise: a lost log line must not stop work."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        try:
            return self._inner.write(text)
        except (OSError, ValueError, AttributeError) as exc:  # EPIPE, ENOSPC; closed; None
            _note_broken(exc)
            return 0

    def flush(self) -> None:
        try:
            self._inner.flush()
        except (OSError, ValueError, AttributeError) as exc:
            _note_broken(exc)

    def isatty(self) -> bool:
        return _isatty(self._inner)


def _note_broken(exc: Exception) -> None:
    global _broken
    if _broken is None:
        _broken = f"{type(exc).__name__}: {exc}"


def stream_broken() -> str | None:
    """Return why a log line could not be written (stderr closed?), or None if none failed."""
    return _broken


_PIECE = 12  # a run this long of the key, in any case, is the key leaking (a server echoing it)
_pieces: dict[str, re.Pattern[str]] = {}


def add_secret(secret: str) -> None:
    """Register a value (the API key) that must never appear in a log line."""
    if secret:
        _secrets.add(secret)
        if len(secret) >= _PIECE:
            windows = {secret[i : i + _PIECE] for i in range(len(secret) - _PIECE + 1)}
            _pieces[secret] = re.compile("|".join(map(re.escape, sorted(windows))), re.IGNORECASE)


def redact(text: str) -> str:
    """Return `text` with every registered secret, or any 12-character run of one in any
    case (a prefix, an echo upper-cased by a server), replaced by ***."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
        pieces = _pieces.get(secret)
        if pieces is not None:
            text = pieces.sub(MASK, text)
    return text


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        return redact(str(value))
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact_api_key(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """structlog processor: mask registered secrets in every value of the event."""
    if not _secrets:
        return event
    for key, value in list(event.items()):
        if key != "exc_info":
            event[key] = _redact_value(value)
    return event


class _RedactingRenderer:
    """Wrap the final renderer so the rendered line itself is scrubbed (tracebacks included)."""

    def __init__(self, inner: Processor) -> None:
        self._inner = inner

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> Any:
        rendered = self._inner(logger, name, event)
        return redact(rendered) if isinstance(rendered, str) else rendered


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog; route stdlib loggers (urllib3) through the same renderer."""
    global _pending, _debug_off
    stream = cast("TextIO", _SafeStream(stream if stream is not None else sys.stderr))
    numeric = _LEVELS.get(level, logging.INFO)
    _debug_off = numeric > logging.DEBUG
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_FirstUseFormatter(handler))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # urllib3 logs one INFO line per connection: noise.
    logging.getLogger("urllib3").setLevel(max(numeric, logging.WARNING))
    with _pending_lock:
        _pending = (numeric, fmt, stream, handler)
    if "structlog" in sys.modules:  # already paid for (tests, a long-lived caller): apply now
        _apply_pending()


def reset() -> None:
    """Forget configure()'s set-up (for a caller that resets structlog, as tests do)."""
    global _pending, _debug_off
    with _pending_lock:
        _pending = None
    _debug_off = False


def _apply_pending() -> None:
    """Apply the set-up configure() recorded, once, whichever thread logs first."""
    global _pending
    if _pending is None:
        return
    with _pending_lock:
        if _pending is None:
            return
        numeric, fmt, stream, handler = _pending
        _apply(numeric, fmt, stream, handler)
        _pending = None


def _apply(numeric: int, fmt: str, stream: TextIO, handler: logging.Handler) -> None:
    import structlog

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_api_key,
    ]
    console = fmt == "console" or (fmt == "auto" and _isatty(stream))
    renderer: Processor
    if console:
        # Plain tracebacks: with rich or better-exceptions installed (comet_ml pulls in rich)
        # the default shows every frame's locals, cut to the panel's width, so a value that
        # holds the key can come out partly, past the redaction that only knows it whole.
        renderer = structlog.dev.ConsoleRenderer(
            colors=_isatty(stream), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        # Locals in tracebacks could hold anything, the key included: leave them out.
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, _RedactingRenderer(renderer)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _RedactingRenderer(renderer),
            ],
        )
    )


class _FirstUseFormatter(logging.Formatter):
    """Stands in until the set-up is applied; a stdlib line (urllib3's) applies it."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self._handler = handler

    def format(self, record: logging.LogRecord) -> str:
        _apply_pending()  # gives the handler its real formatter
        real = self._handler.formatter
        if real is None or real is self:
            return super().format(record)
        return real.format(record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Logger(Protocol):
    """What the agent's modules call on a logger: one method per level, an event and fields."""

    def debug(self, event: str, **fields: Any) -> None:
        """Log at debug."""

    def info(self, event: str, **fields: Any) -> None:
        """Log at info."""

    def warning(self, event: str, **fields: Any) -> None:
        """Log at warning."""

    def error(self, event: str, **fields: Any) -> None:
        """Log at error."""

    def exception(self, event: str, **fields: Any) -> None:
        """Log at error, with the exception being handled."""


def get_logger(name: str | None = None) -> Logger:
    """Return a structlog logger (structlog itself is imported when it first logs)."""
    return cast(Logger, _Logger(name))


def _drop(*args: object, **kwargs: object) -> None:
    return None


def keep_out_unused_renderers() -> None:
    """In the agent's own process: stop structlog loading rich and better-exceptions.

    structlog.dev imports them when they are installed (comet_ml brings rich) to render
    exceptions; the agent renders plain tracebacks, so they would only hold ~5 MB of
    memory for the life of the daemon. Python's import system refuses a module whose
    sys.modules entry is None; one already imported is left alone.
    """
    for name in ("rich", "better_exceptions"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


class _Logger:
    """A structlog logger that imports structlog and applies configure() at its first call."""

    __slots__ = ("_name", "_real")

    def __init__(self, name: str | None) -> None:
        self._name = name
        self._real: Any = None

    def __getattr__(self, attr: str) -> Any:
        if _debug_off and attr == "debug":
            # structlog's filtering logger would drop it too, but its lazy proxy binds a new
            # logger on every call first: a per-sample debug line cost more than the sample.
            return _drop
        real = self._real
        if real is None:
            _apply_pending()
            import structlog

            real = self._real = structlog.get_logger(self._name)
        return getattr(real, attr)


class RateLimiter:
    """Let the first event of a kind through, then one per `period_s` with a count of repeats.

    Expected failures (server down, a collector failing every minute) log once,
    then hourly with ``repeats=N``, instead of a line per attempt.
    """

    def __init__(
        self, period_s: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._period_s = period_s
        self._clock = clock
        self._seen: MutableMapping[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def check(self, kind: str) -> int | None:
        """Return None to stay quiet, else the number of events skipped since the last line."""
        now = self._clock()
        with self._lock:
            last = self._seen.get(kind)
            if last is None:
                self._seen[kind] = (now, 0)
                return 0
            when, skipped = last
            if now - when >= self._period_s:
                self._seen[kind] = (now, 0)
                return skipped
            self._seen[kind] = (when, skipped + 1)
            return None

    def reset(self, kind: str) -> bool:
        """Forget `kind` (it recovered); return whether it had been seen."""
        with self._lock:
            return self._seen.pop(kind, None) is not None
