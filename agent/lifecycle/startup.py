"""The steps `comet-agent start` and `comet-agent run` share before and around sampling.

Core dumps off first (the API key is in this process's memory), then the key this
node uses (given, read from a sidecar's file, or to be made by the leader), and the
signal handlers that turn SIGTERM/SIGINT into a clean stop.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from types import FrameType
from typing import TYPE_CHECKING

from agent import log
from agent.config import Settings
from agent.lifecycle import sidecar
from agent.lifecycle.hardening import disable_core_dumps
from agent.lifecycle.multinode import identify, is_leader

if TYPE_CHECKING:
    from agent.lifecycle.agent import Agent

logger = log.get_logger(__name__)

__all__ = ["disable_core_dumps", "install_signals", "node_settings"]


def node_settings(
    settings: Settings, environ: Mapping[str, str], key_file: str | None = None
) -> Settings:
    """Return `settings` with the experiment key this node uses (its role decides who makes it)."""
    return sidecar.resolve_key(
        settings, key_file, leader=is_leader(identify(environ), settings.role)
    )


def install_signals(agent: Agent) -> None:
    """SIGTERM/SIGINT ask for a clean stop; a second one exits at once (the outbox is on disk)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if agent.stop_event.is_set():
            logger.warning("agent.forced_exit", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        agent.stop_event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
