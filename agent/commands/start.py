"""``comet-agent start``: the daemon, until a signal, the watched process or the sidecar's end."""

from __future__ import annotations

import argparse
import os
import sys

from agent import log
from agent.config import Settings
from agent.errors import UsageError
from agent.lifecycle.agent import Agent
from agent.lifecycle.startup import disable_core_dumps, install_signals, node_settings
from agent.lifecycle.watch import command_of, start_time

logger = log.get_logger(__name__)


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``comet-agent start`` until stopped; return the exit status."""
    from agent.lifecycle import sidecar

    disable_core_dumps()  # the API key is in this process's memory (agent.lifecycle.hardening)
    if args.watch_pid is not None and start_time(args.watch_pid) is None:
        # Before anything is created: no state taken, no experiment, no archive.
        raise UsageError(
            f"--watch-pid {args.watch_pid}: no such process; give the pid of a running one"
        )

    settings = node_settings(settings, os.environ, args.experiment_key_file)
    # The key is chosen here (or given) and samples are taken from the start; the experiment
    # is made or joined when Comet answers (an outage at start-up loses nothing, restarts
    # nothing), and a follower's or sidecar's key published early is safe to use at once.
    agent = Agent(
        settings,
        pid=args.watch_pid,
        command=command_of(args.watch_pid),
        refusal_stops=True,
    )
    install_signals(agent)
    attachment = agent.start()
    if log.stream_broken() is not None:
        # Nobody reads our log (stderr's reader is gone): exit so systemd restarts us with one.
        agent.stop()
        return 1
    if args.experiment_key_file:
        sidecar.publish_key(args.experiment_key_file, attachment.experiment_key)
    where = f" {attachment.link}" if attachment.link else ""
    mode = "offline" if attachment.offline else "attached"
    print(f"comet-agent: {mode} experiment {attachment.experiment_key}{where}", flush=True)
    try:
        reason = agent.wait(watch_pid=args.watch_pid, exit_with=args.exit_with)
        logger.info("agent.stop_requested", reason=reason)
    finally:
        agent.stop()
    if agent.join_error:
        print(f"comet-agent: {agent.join_error}", file=sys.stderr, flush=True)
        return 2 if agent.join_config_error else 1
    return 0
