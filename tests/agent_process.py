"""Run the installed agent as a real subprocess and read its JSON log lines as they come."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.helpers import agent_argv, wait_until

LIVE: list[AgentProcess] = []  # every agent started; tests/conftest.py reaps the survivors


class AgentProcess:
    """``comet-agent ARGS`` in a subprocess; stderr parsed line by line."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            list(argv) if argv is not None else [*agent_argv(), *self.args],  # argv: a launcher
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.events: list[dict[str, object]] = []
        self.stdout = ""
        self._lock = threading.Lock()
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err.start()
        self._out.start()
        LIVE.append(self)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.events.append(event)

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for chunk in self.proc.stdout:
            with self._lock:
                self.stdout += chunk

    @property
    def pid(self) -> int:
        return self.proc.pid

    def named(self, name: str) -> list[dict[str, object]]:
        """The log events called `name`, so far."""
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def wait_for(self, name: str, timeout_s: float = 30.0, count: int = 1) -> dict[str, object]:
        """Wait until `count` events called `name` were logged; return the last."""
        try:
            wait_until(
                lambda: len(self.named(name)) >= count or self.proc.poll() is not None, timeout_s
            )
        except AssertionError:
            raise AssertionError(
                f"no {name!r} within {timeout_s} s:\n{self.stderr[-3000:]}"
            ) from None
        found = self.named(name)
        if len(found) < count:
            raise AssertionError(
                f"agent exited ({self.proc.returncode}) before {name!r}:\n{self.stderr[-3000:]}"
            )
        return found[count - 1]

    def samples(self, collector: str = "cpu") -> list[int]:
        """Timestamps of the samples the agent queued (its sample.queued DEBUG lines)."""
        return [
            int(e["timestamp_ms"])
            for e in self.named("sample.queued")  # type: ignore[call-overload]
            if e.get("collector") == collector
        ]

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then wait for the exit; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._err.join(timeout=5)
        self._out.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def kill(self) -> None:
        """kill -9."""
        self.proc.kill()
        self.wait()

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self.lines)


def gaps_s(stamps: Sequence[int]) -> list[float]:
    """Seconds between consecutive timestamps."""
    return [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]


def monotonic_wait(seconds: float) -> None:
    """Sleep in a test (the agent runs in another process)."""
    time.sleep(seconds)


def reap() -> None:
    """Kill every agent a test left running (a failed assertion skips its stop())."""
    while LIVE:
        agent = LIVE.pop()
        if agent.proc.poll() is None:
            agent.kill()
        else:
            agent.wait(timeout_s=5)
