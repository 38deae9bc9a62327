"""Logging: JSON off a terminal, console on one, the API key never rendered."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap

import pytest
import structlog

from agent import log
from tests.helpers import CANARY_KEY


@pytest.fixture(autouse=True)
def _restore() -> None:
    yield  # type: ignore[misc]
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_json_line_per_event_with_key_redacted() -> None:
    """Off a terminal each event is one JSON line; the key is masked in values and tracebacks."""
    log.add_secret(CANARY_KEY)
    out = io.StringIO()
    log.configure("info", "auto", out)
    logger = log.get_logger()
    logger.info("experiment.attached", note=f"key={CANARY_KEY}", nested={"k": [CANARY_KEY]})
    try:
        raise ValueError(f"boom {CANARY_KEY}")
    except ValueError:
        logger.exception("agent.crashed")
    logging.getLogger("urllib3").warning("stdlib says %s", CANARY_KEY)
    text = out.getvalue()
    assert CANARY_KEY not in text
    lines = text.splitlines()
    first = json.loads(lines[0])
    assert first["event"] == "experiment.attached" and first["level"] == "info"
    assert first["note"] == "key=***"
    assert all(json.loads(line) for line in lines)


def test_console_format_and_level_filter() -> None:
    """The console renderer is readable; debug lines are filtered at info."""
    out = io.StringIO()
    log.configure("info", "console", out)
    logger = log.get_logger()
    logger.debug("sample.taken")
    logger.info("agent.ready", interval_s=30)
    text = out.getvalue()
    assert "agent.ready" in text and "interval_s=30" in text
    assert "sample.taken" not in text


def test_rate_limiter_once_then_periodic() -> None:
    """An expected failure logs once, then once per period with the count of repeats."""
    now = [0.0]
    limiter = log.RateLimiter(period_s=60, clock=lambda: now[0])
    assert limiter.check("server.down") == 0
    assert limiter.check("server.down") is None
    assert limiter.check("server.down") is None
    now[0] = 61
    assert limiter.check("server.down") == 2
    assert limiter.reset("server.down") is True
    assert limiter.check("server.down") == 0


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a new interpreter, where nothing has imported structlog yet."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )


def test_structlog_loads_at_the_first_line_and_the_setup_applies() -> None:
    """configure() alone does not import structlog; the first line does, as JSON, key masked."""
    done = _fresh(
        textwrap.dedent(f"""
            import sys
            from agent import log
            log.add_secret({CANARY_KEY!r})
            log.configure("info", "json", sys.stdout)
            print("loaded before:", "structlog" in sys.modules, flush=True)
            log.get_logger("x").debug("sample.taken")
            log.get_logger("x").info("agent.ready", note="key={CANARY_KEY}")
        """)
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "loaded before: False"
    assert len(lines) == 2  # the debug line was filtered by the level configured
    event = json.loads(lines[1])
    assert (event["event"], event["level"], event["note"]) == ("agent.ready", "info", "key=***")


def test_a_stdlib_line_first_applies_the_setup_too() -> None:
    """urllib3 logging before any structlog line is rendered as JSON, redacted, not raw."""
    done = _fresh(
        textwrap.dedent(f"""
            import logging, sys
            from agent import log
            log.add_secret({CANARY_KEY!r})
            log.configure("info", "json", sys.stdout)
            logging.getLogger("urllib3").info("connection noise")
            logging.getLogger("urllib3").warning("retrying %s", {CANARY_KEY!r})
        """)
    )
    (line,) = done.stdout.splitlines()  # the INFO line is below urllib3's WARNING floor
    event = json.loads(line)
    assert (event["event"], event["level"]) == ("retrying ***", "warning")


@pytest.mark.parametrize(
    "echo",
    [CANARY_KEY.upper(), CANARY_KEY.lower(), CANARY_KEY[:14], "x" + CANARY_KEY[5:20].swapcase()],
    ids=["upper", "lower", "prefix", "middle-swapped"],
)
def test_the_key_is_masked_in_any_case_and_as_a_long_piece(echo: str) -> None:
    """A server echoing the key upper-cased, or a 12+ character piece of it: never shown."""
    log.add_secret(CANARY_KEY)
    shown = log.redact(f"Comet said: bad key {echo}!")
    assert all(
        CANARY_KEY[i : i + 12].lower() not in shown.lower() for i in range(len(CANARY_KEY) - 11)
    )
    assert shown.startswith("Comet said: bad key ")


def test_debug_lines_follow_the_level_each_configure_sets() -> None:
    """At info a debug call writes nothing (and returns at once); configured for debug again,
    the next debug call is written."""
    out = io.StringIO()
    log.configure("info", "json", out)
    logger = log.get_logger("t")
    logger.debug("sample.queued", collector="cpu")
    logger.info("agent.ready")
    log.configure("debug", "json", out)
    logger.debug("sample.queued", collector="memory")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], e.get("collector")) for e in events] == [
        ("agent.ready", None),
        ("sample.queued", "memory"),
    ]
