"""The status snapshot is written while sampling jobs run: it must never see a dict mid-change."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.collect.base import Sample
from agent.config import load_settings
from agent.lifecycle.agent import Agent
from agent.lifecycle.samples import Channels
from agent.lifecycle.state import StateDir


class _Sampler:
    """A sampler under a new name each time (a collector reporting for the first time)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def collect(self) -> Sample:
        return Sample(1_700_000_000_000)

    def close(self) -> None:
        """Nothing to release."""


def test_status_snapshot_while_collectors_report(tmp_path: Path) -> None:
    """begin() and the heartbeat write status.json while sampling jobs add collector state.

    Bar: no write ever fails (a RuntimeError here killed the agent in begin()).
    """
    home = tmp_path / "home"
    home.mkdir()
    settings = load_settings(environ={"HOME": str(home)}, home=home, cwd=tmp_path)
    agent = Agent(settings, environ={})
    state = StateDir.acquire(tmp_path / "state")
    stop = threading.Event()
    errors: list[BaseException] = []

    sampling = agent._sampling

    def report() -> None:
        for n in range(20_000):
            if stop.is_set():
                return
            sampling.groups["cpu"] = [_Sampler(f"collector-{n}")]
            sampling.sample("cpu", "k" * 32, Channels(), lambda _messages: True)  # a sampling job

    reporter = threading.Thread(target=report)
    reporter.start()
    try:
        while reporter.is_alive():
            try:
                state.write_status(agent.status())
            except RuntimeError as exc:
                errors.append(exc)
                break
    finally:
        stop.set()
        reporter.join()
        state.release()
    assert errors == []
