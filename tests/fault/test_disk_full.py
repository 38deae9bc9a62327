"""An outbox that cannot be written (a full disk): held in memory, said once, nothing hidden.

The agent subprocess gets a file-size limit after start-up (``prlimit(2)`` on its pid, Linux),
so every write of its SQLite files past the first 4 KiB fails with EFBIG as a full disk fails
with ENOSPC (CPython ignores SIGXFSZ, which the test checks). The limit can be lifted again on
the running process the same way; the other case stops the agent while the disk is still full.
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from random import Random

import pytest

from agent.api.client import CometClient
from agent.delivery.backoff import Backoff
from agent.delivery.outbox import Outbox
from agent.delivery.sender import Sender
from agent.delivery.sinks.rest import RestSink
from agent.message import Message
from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.fault.checker import assert_delivered, check, taken_from, wait_delivered
from tests.fault.lifecycle import stop_agent, wait_agent
from tests.helpers import CANARY_KEY, run_agent, wait_until

pytestmark = pytest.mark.skipif(
    not hasattr(resource, "prlimit"), reason="needs prlimit(2) (Linux) to limit a running process"
)
LIMIT_BYTES = 4096  # writes at any offset past 4 KiB fail: the WAL cannot take a single frame
STOP_TIMEOUT_S = 3.0
KEY = "0123456789abcdef0123456789abcdef"


def _limit(pid: int, size: int) -> None:
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def _ignores_sigxfsz(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGXFSZ - 1) & 1)
    return False


def _fill_the_disk(
    server: CometStandIn, agent: AgentProcess, env: dict[str, str]
) -> dict[str, object]:
    """Outage (rows pile up on disk), then the limit: wait until samples are held in memory."""
    assert _ignores_sigxfsz(agent.pid)  # else the limit would kill it, not fail its writes
    wait_until(lambda: server.count("add-cpu-metrics") >= 1, timeout_s=20)
    server.outage(status=503)
    on_disk = len(agent.samples())
    wait_until(lambda: len(agent.samples()) >= on_disk + 2, timeout_s=20)
    _limit(agent.pid, LIMIT_BYTES)
    agent.wait_for("outbox.put_failed", timeout_s=20)
    held = lambda: [e for e in agent.named("sample.queued") if e["written"] is False]  # noqa: E731
    wait_until(lambda: len(held()) >= 10, timeout_s=20)  # two rounds of the five samplers
    wait_until(lambda: _pending(env) > 0, timeout_s=15)  # the 5 s status snapshot
    snapshot = json.loads(run_agent(["status", "--json"], env).stdout)["snapshot"]
    assert isinstance(snapshot, dict)
    return snapshot


def _pending(env: Mapping[str, str]) -> int:
    result = run_agent(["status", "--json"], env)
    try:
        return int(json.loads(result.stdout)["snapshot"]["pending_in_memory"])
    except (ValueError, KeyError, TypeError):
        return 0


def test_disk_full_then_space_again_loses_nothing(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
) -> None:
    """The outbox stops being writable during an outage; later it is writable again (the
    limit lifted on the running process) and Comet is back.

    Bar: while full, one outbox.put_failed line (no traceback), sampling goes on, status shows
    the messages held in memory, the process never exits; once writable, outbox.put_recovered
    and every sample arrives: zero lost, no reordering, duplicates 0.
    """
    agent, key = start_agent(agent_env)
    snapshot = _fill_the_disk(server, agent, agent_env)
    assert agent.proc.poll() is None
    assert int(snapshot["pending_in_memory"]) > 0  # type: ignore[call-overload]
    _limit(agent.pid, resource.RLIM_INFINITY)
    server.recover()
    recovered = agent.wait_for("outbox.put_recovered", timeout_s=20)
    held_lines = [e for e in agent.named("sample.queued") if e["written"] is False]
    assert int(recovered["count"]) >= sum(int(e["messages"]) for e in held_lines)  # type: ignore[call-overload]
    wait_delivered(server, lambda: taken_from(agent.named("sample.queued")), key, timeout_s=30)
    assert stop_agent(agent) == 0
    assert_delivered(check(server, taken_from(agent.named("sample.queued")), key))
    assert len(agent.named("outbox.put_failed")) == 1
    assert not agent.named("outbox.unwritten")
    assert "Traceback" not in agent.stderr


def test_disk_full_at_stop_says_what_it_could_not_write(
    server: CometStandIn,
    agent_env: dict[str, str],
    start_agent: Callable[..., tuple[AgentProcess, str]],
) -> None:
    """The disk is still full when the agent is stopped: what was only in memory dies with the
    process, and the process says so; what reached the disk goes out after a restart.

    Bar: exit 0 within the stop deadline + 2.5 s; one outbox.unwritten ERROR line whose sample
    count equals the messages of every sample logged written=false (the log is the whole
    truth); after a restart without the limit, every sample logged written=true arrives, zero
    lost, no reordering, duplicates 0, and none logged written=false does.
    """
    env = {**agent_env, "COMET_AGENT_STOP_TIMEOUT_S": str(STOP_TIMEOUT_S)}
    agent, key = start_agent(env)
    _fill_the_disk(server, agent, env)
    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert wait_agent(agent, timeout_s=30) == 0
    assert time.monotonic() - started < STOP_TIMEOUT_S + 2.5
    (unwritten,) = agent.named("outbox.unwritten")
    taken = taken_from(agent.named("sample.queued"))
    held = [e for e in agent.named("sample.queued") if e["written"] is False]
    by_kind = unwritten["by_kind"]
    assert isinstance(by_kind, dict)
    assert by_kind["sample"] == sum(int(e["messages"]) for e in held)  # type: ignore[call-overload]
    assert "Traceback" not in agent.stderr
    server.recover()
    again, _ = start_agent(env)
    on_disk = [t for t in taken if t.written]
    wait_delivered(server, lambda: on_disk, key, timeout_s=30)
    assert stop_agent(again) == 0
    assert_delivered(check(server, on_disk, key))  # unexpected (a held sample) would fail here


class _LockingSink:
    """A real sink that, during its first send to `endpoint`, lets another SQLite connection
    take the outbox's write lock for `hold_s` (as a full disk, every write fails meanwhile)."""

    def __init__(self, inner: RestSink, path: Path, endpoint: str, hold_s: float) -> None:
        self._inner = inner
        self._path = path
        self._endpoint = endpoint
        self._hold_s = hold_s
        self._other: sqlite3.Connection | None = None

    def send(
        self,
        endpoint: str,
        experiment_key: str,
        body: Mapping[str, object],
        attachment: bytes | None,
    ) -> object:
        if endpoint == self._endpoint and self._other is None:
            self._other = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._other.execute("BEGIN IMMEDIATE")
            threading.Timer(self._hold_s, self._other.execute, ("ROLLBACK",)).start()
        return self._inner.send(endpoint, experiment_key, body, attachment)

    def close(self) -> None:
        if self._other is not None:
            self._other.close()
        self._inner.close()


@pytest.fixture(name="box")
def _box(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db") as box:
        yield box


def _load(n: int) -> Message:
    return Message(
        "add-load-metrics",
        KEY,
        {"loadAverage": n / 100, "timestamp": 1_700_000_000_000 + n},
        1_700_000_000_000 + n,
    )


def test_rows_left_leased_by_a_failed_write_go_out_first(box: Outbox, server: CometStandIn) -> None:
    """A retry that cannot be written (the outbox locked, as by a full disk) leaves its batch
    leased; once writable, that batch goes out before anything newer, in the same process.

    Bar: all six arrive, in order, none twice, without a restart.
    """
    server.fail("add-load-metrics", status=503)
    rest = RestSink(CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=3))
    sink = _LockingSink(rest, box.path, "add-load-metrics", hold_s=5.5)  # busy_timeout is 5 s
    backoff = Backoff(wait_initial=0.05, wait_max=0.5, wait_jitter=0.05)
    sender = Sender(box, sink, backoff=backoff, rand=Random(0))
    box.put_many([_load(n) for n in range(1, 6)])
    sender.start()
    try:
        wait_until(lambda: server.count("add-load-metrics", ok_only=False) >= 1, timeout_s=5)
        box.put(_load(6))  # waits for the lock too, then is the newest row
        sender.wake()
        wait_until(lambda: server.count("add-load-metrics") >= 6, timeout_s=20)
    finally:
        assert sender.stop(5)
        sink.close()
    stamps = [r.body["timestamp"] - 1_700_000_000_000 for r in server.received("add-load-metrics")]  # type: ignore[index]
    assert stamps == [1, 2, 3, 4, 5, 6]
    assert box.pending() == 0
