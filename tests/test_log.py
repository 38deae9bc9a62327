"""Logging: JSON off a terminal, console on one, the API key never rendered."""

from __future__ import annotations

import io
import json
import logging

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
