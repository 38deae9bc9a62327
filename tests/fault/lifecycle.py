"""Stopping an agent in the fault suite: a hang fails with every thread's stack, not a timeout."""

from __future__ import annotations

import signal
import subprocess

from tests.agent_process import AgentProcess


def stop_agent(agent: AgentProcess, timeout_s: float = 30.0) -> int:
    """SIGTERM and wait; on a hang, SIGABRT (faulthandler prints the stacks) and fail with them."""
    if agent.proc.poll() is None:
        agent.proc.send_signal(signal.SIGTERM)
    return wait_agent(agent, timeout_s)


def wait_agent(agent: AgentProcess, timeout_s: float) -> int:
    """Wait for the exit; on a hang, fail with the stacks of every thread (PYTHONFAULTHANDLER)."""
    try:
        agent.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        agent.proc.send_signal(signal.SIGABRT)
        agent.wait(timeout_s=10)
        raise AssertionError(
            f"agent {agent.pid} hung: no exit {timeout_s} s after SIGTERM; its stacks:\n"
            + agent.stderr[-12000:]
        ) from None
    return agent.wait(timeout_s=10)
