"""Fixtures: the Comet stand-in, an isolated environment, the canary key."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent import log
from tests.agent_process import reap
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, TEST_KEYS, clean_env

# What makes a test module end-to-end: it starts the installed agent in a subprocess.
_E2E_CALLS = (
    "run_agent(",
    "AgentProcess(",
    "agent_argv(",
    "start_agent(",
    "run_as_user(",
    "from bench",
)
_e2e_modules: dict[str, bool] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the fault and security suites `fault`, and every subprocess test module `e2e`.

    ``pytest -m "not e2e and not fault"`` is then the fast loop for contributors.
    """
    for item in items:
        path = Path(str(item.fspath))
        if path.parent.name in ("fault", "security"):
            item.add_marker(pytest.mark.fault)
        key = str(path)
        if key not in _e2e_modules:
            text = path.read_text(errors="replace")
            _e2e_modules[key] = any(call in text for call in _E2E_CALLS)
        if _e2e_modules[key]:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Undo what an in-process main() configured: its stream (capsys's) is closed afterwards."""
    yield
    structlog.reset_defaults()
    log.reset()
    logging.getLogger().handlers.clear()


@pytest.fixture(autouse=True)
def _reap_agents() -> Iterator[None]:
    """No agent subprocess outlives its test, whatever the test's outcome."""
    yield
    reap()


@pytest.fixture(name="server")
def _server() -> Iterator[CometStandIn]:
    """A stand-in that accepts only the canary key; every test ends with no wire breach."""
    with CometStandIn(api_key=CANARY_KEY, known_keys=TEST_KEYS) as server:
        yield server
    assert server.violations == [], server.violations


@pytest.fixture(name="home")
def _home(tmp_path: Path) -> Path:
    """An empty home directory."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture(name="env")
def _env(home: Path, server: CometStandIn) -> dict[str, str]:
    """Environment for a subprocess agent pointed at the stand-in with the canary key."""
    return clean_env(
        home,
        {
            "COMET_API_KEY": CANARY_KEY,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_WORKSPACE": "ws",
            "COMET_PROJECT_NAME": "proj",
        },
    )


@pytest.fixture(name="offline_env")
def _offline_env(home: Path) -> dict[str, str]:
    """Environment for a subprocess agent with no API key (offline)."""
    return clean_env(home)


@pytest.fixture(name="genv")
def _genv(tmp_path: Path, home: Path) -> dict[str, str]:
    """An environment for `git` where no user or system git configuration leaks in."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CEILING_DIRECTORIES": str(tmp_path),
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@example.com",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@example.com",
    }
