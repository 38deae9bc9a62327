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
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from agent import log
from agent.config import Settings
from agent.errors import AgentError, UsageError
from agent.lifecycle.attach import planned_attachment
from agent.lifecycle.ending import StderrTail, exception_line
from agent.lifecycle.multinode import identify
from agent.lifecycle.startup import disable_core_dumps, install_signals, node_settings
from agent.message import Message
from agent.wrap.output import OutputStream
from agent.wrap.process import child_env, run_child

if TYPE_CHECKING:
    # Imported once the command runs: the daemon's modules and its state directory are most
    # of what `run` would otherwise do before the command starts.
    from agent.lifecycle.agent import Agent
    from agent.lifecycle.attach import Attachment

logger = log.get_logger(__name__)
BEGIN_JOIN_S = 30.0
HELD_MAX = 10_000  # output messages held while the agent opens (a second's worth is usual)
HELD_WAIT_S = 2.0  # how long a writer past HELD_MAX waits for the agent before dropping


class _UntilOpen:
    """The output's `put` while the agent opens beside the command: messages are held, then
    handed over in order; with no agent (nowhere to keep them), dropped and counted.

    Past HELD_MAX held messages a writer waits, up to HELD_WAIT_S, for the agent to open
    (the command's output backs up meanwhile, as it would behind a slow disk); then the
    newest are dropped and counted, as the output stream itself does at its cap.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: list[Message] = []
        self._put: Callable[[Sequence[Message]], bool] | None = None
        self.dropped = 0

    def __call__(self, messages: Sequence[Message]) -> bool:
        """Hold `messages`, or pass them on once the agent is open."""
        with self._cond:
            if self._put is None and len(self._held) >= HELD_MAX:
                self._cond.wait_for(lambda: self._put is not None, HELD_WAIT_S)
            put = self._put
            if put is None:
                room = max(0, HELD_MAX - len(self._held))
                self._held.extend(messages[:room])
                self.dropped += max(0, len(messages) - room)
                return True
        return put(messages)

    def open(self, put: Callable[[Sequence[Message]], bool]) -> None:
        """From now on pass messages to `put`, the held ones first."""
        with self._cond:  # a put racing this one waits, so the order holds
            if self._held:
                put(self._held)
            self._held = []
            self._put = put
            self._cond.notify_all()

    def close(self) -> None:
        """No agent after all: drop what is held and what comes, counted."""
        with self._cond:
            self.dropped += len(self._held)
            self._held = []
            self._put = self._discard
            self._cond.notify_all()

    def _discard(self, messages: Sequence[Message]) -> bool:
        with self._cond:
            self.dropped += len(messages)
        return True


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
    # The key and the mode are known before anything is opened: the command starts with
    # them, and the agent (state directory, outbox, archive) opens beside it.
    planned = planned_attachment(settings)
    key = planned.experiment_key
    mode = "recording offline" if planned.offline else "experiment"
    print(f"comet-agent: {mode} {key}", file=sys.stderr, flush=True)
    held = _UntilOpen()
    stream = None
    if settings.capture_output:
        stream = OutputStream(
            held,
            key,
            batch_lines=settings.batch_lines,
            max_line_bytes=settings.max_line_bytes,
            flush_interval_s=settings.flush_interval_s,
            context=identify(env).context,
        )
    agents: list[Agent] = []
    begins: list[threading.Thread] = []

    def on_start(pid: int) -> None:
        agent = _open(settings, argv, planned, held)
        if agent is None:
            return
        agents.append(agent)
        agent.output = stream
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
        env=child_env(env, settings, key, offline=planned.offline),
        use_pty=bool(args.pty),
        on_output=on_output,
        on_start=on_start,
        oom_kill_count=_oom_counter(),
        core_limit=core_limit,
    )
    if not agents:  # unmonitored: said when the agent could not open
        if stream is not None:
            stream.close()
        return result.exit_code
    agent = agents[0]
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
    if held.dropped:
        logger.warning("output.dropped_at_start", lines=held.dropped)
    agent.stop(child=child)
    return result.exit_code


def _open(
    settings: Settings, argv: list[str], planned: Attachment, held: _UntilOpen
) -> Agent | None:
    """Open the agent beside the running command; None (said once) when it cannot keep even an
    outbox: the command runs on, unmonitored."""
    from agent.lifecycle.agent import Agent, StateUnusable

    agent = Agent(settings, command=argv, private_state=True, hands_key=True, attachment=planned)
    try:
        agent.open(join_now=False)  # the join starts right after, beside the command
    except AgentError as exc:
        unmonitored = "" if isinstance(exc, StateUnusable) else "; the command runs unmonitored"
        print(f"comet-agent: warning: {exc}{unmonitored}", file=sys.stderr, flush=True)
        held.close()
        return None
    held.open(agent.put)
    return agent


def _begin(agent: Agent, pid: int) -> None:
    try:
        agent.begin(pid=pid)
    except Exception:  # a thread of its own: log it here, the command runs on regardless
        logger.exception("agent.begin_failed")


def _oom_counter() -> Callable[[], int | None]:
    pid = os.getpid()  # the command starts in the wrapper's cgroup

    def count() -> int | None:
        # Read just after the spawn and after the exit: not loaded before the command runs.
        from agent.collect import cgroup
        from agent.collect.base import Roots

        return cgroup.oom_kill_count(Roots(), pid)

    return count
