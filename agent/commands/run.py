"""``comet-agent run -- COMMAND``: attach, run the command under watch, report how it ended.

Nothing waits for Comet: the agent chooses the experiment key (or takes the one
given), starts the command at once with ``COMET_EXPERIMENT_KEY`` set so a
comet_ml SDK inside it reports into the same experiment, and makes the
experiment exist in a thread of its own through the SDK's get-or-create
handshake (whoever comes first creates it, the other joins). Until Comet has
answered, messages wait in the outbox; a run that ends before it ever answers
is written to an offline archive with the same key. The static facts and
samplers follow the command's pid in a thread of their own, and after the
command ends the agent takes a last sample, records the exit (with the
exception line of its last traceback), and flushes within ``[agent] stop_timeout_s``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import replace

from agent import log
from agent.collect.base import Roots
from agent.config import Settings
from agent.errors import UsageError
from agent.lifecycle.agent import Agent, StateUnusable
from agent.lifecycle.ending import StderrTail, exception_line
from agent.lifecycle.startup import disable_core_dumps, install_signals, node_settings
from agent.wrap.output import OutputStream
from agent.wrap.process import child_env, run_child

logger = log.get_logger(__name__)
BEGIN_JOIN_S = 30.0


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the wrapped command; return its exit status (128+N for signal N)."""
    core_limit = disable_core_dumps()  # the key is in our memory; the command gets its own back
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError(
            "give the command to run after --, e.g. comet-agent run -- python train.py"
        )
    env = dict(os.environ)
    if shutil.which(argv[0], path=env.get("PATH")) is None and not os.path.exists(argv[0]):
        # As a shell would, and before an experiment is created for nothing.
        print(f"comet-agent: {argv[0]}: command not found", file=sys.stderr)
        return 127
    settings = node_settings(settings, env)
    agent = Agent(settings, command=argv, private_state=True, hands_key=True)
    try:
        attachment = agent.open(join_now=False)  # the join starts once the command runs
    except StateUnusable as exc:
        # Nowhere to keep even an outbox: the training still runs, unmonitored, said once.
        print(f"comet-agent: warning: {exc}", file=sys.stderr, flush=True)
        return run_child(argv, env=env, use_pty=bool(args.pty), core_limit=core_limit).exit_code
    mode = "recording offline" if attachment.offline else "experiment"
    print(f"comet-agent: {mode} {attachment.experiment_key}", file=sys.stderr, flush=True)
    stream = None
    if agent.settings.capture_output:
        s = agent.settings
        stream = OutputStream(
            agent.put,
            attachment.experiment_key,
            batch_lines=s.batch_lines,
            max_line_bytes=s.max_line_bytes,
            flush_interval_s=s.flush_interval_s,
            context=agent.identity.context,
        )
        agent.output = stream
    begins: list[threading.Thread] = []

    def on_start(pid: int) -> None:
        agent.start_join()
        begin = threading.Thread(target=_begin, args=(agent, pid), name="agent-begin", daemon=True)
        begins.append(begin)
        begin.start()

    tail = StderrTail()

    def on_output(chunk: bytes, is_err: bool) -> None:
        if is_err:
            tail.feed(chunk)
        if stream is not None:
            stream.feed(chunk, stderr=is_err)

    result = run_child(
        argv,
        env=child_env(env, agent.settings, attachment.experiment_key, offline=attachment.offline),
        use_pty=bool(args.pty),
        on_output=on_output,
        on_start=on_start,
        oom_kill_count=_oom_counter(),
        core_limit=core_limit,
    )
    install_signals(agent)  # from here on, a signal hurries the flush; a second one ends it
    for begin in begins:
        begin.join(BEGIN_JOIN_S)
    child = replace(result, exception=exception_line(tail.text()) if result.exit_code else None)
    logger.info(
        "run.exited",
        exit_code=result.exit_code,
        signal=result.signal,
        wall_s=round(result.wall_s, 3),
        oom_killed=result.oom_killed,
    )
    agent.stop(child=child)
    return result.exit_code


def _begin(agent: Agent, pid: int) -> None:
    try:
        agent.begin(pid=pid)
    except Exception:  # a thread of its own: log it here, the command runs on regardless
        logger.exception("agent.begin_failed")


def _oom_counter() -> Callable[[], int | None]:
    roots = Roots()
    pid = os.getpid()  # the command starts in the wrapper's cgroup

    def count() -> int | None:
        from agent.collect import cgroup  # read once the command has ended, not before it runs

        return cgroup.oom_kill_count(roots, pid)

    return count
