"""A nearly full disk (a small tmpfs): the outbox's journal stays bounded, sending goes on.

Needs root to mount a tmpfs (the suite runs as root in CI); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.api.client import CometClient
from agent.config import load_settings
from agent.delivery.outbox import Outbox
from agent.delivery.pipeline import Delivery
from agent.delivery.sinks.rest import RestSink
from agent.message import Message
from tests.fakes.comet_server import CometStandIn
from tests.fault.tmpfs import small_tmpfs
from tests.helpers import CANARY_KEY, wait_until

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000_000
DISK_BYTES = 3 * 1024 * 1024  # under the 4 MiB SQLite's WAL grew to before it checkpointed


@pytest.fixture(name="small_disk")
def _small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs, unmounted afterwards."""
    with small_tmpfs(tmp_path / "disk", str(DISK_BYTES)) as mount:
        yield mount


def _sample(n: int) -> Message:
    item = {"metricName": "sys.cpu.percent.avg", "metricValue": n, "step": None,
            "epoch": None, "context": "x" * 800, "timestamp": T0 + n}  # fmt: skip
    return Message("log-metric-batch", KEY, {"values": [item]}, T0 + n)


def test_sending_through_a_nearly_full_disk_keeps_the_journal_bounded(small_disk: Path) -> None:
    """20 MB through an outbox on a 3 MiB disk, never more than a few rows waiting: no error.

    Before, the WAL grew to 4 MiB before SQLite checkpointed: the disk filled with an
    outbox nearly empty, every put failed, and samples were held in memory, then lost.
    """
    path = small_disk / "outbox.sqlite3"
    wal = path.with_name(path.name + "-wal")
    clock = iter(range(T0, T0 + 10**9, 500))  # half a second per call: acks truncate often
    largest = 0
    with Outbox(path, clock=lambda: next(clock)) as box:
        for round_ in range(250):
            box.put_many([_sample(round_ * 100 + n) for n in range(100)])
            box.ack([s.id for s in box.lease(1000)])
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        assert box.pending() == 0
    assert largest <= 2 * 1024 * 1024  # bounded: 1 MiB auto-checkpoint, truncated after sends


def _fill(directory: Path) -> None:
    """Write a filler file until the disk refuses another byte."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)


def test_a_full_disk_sends_what_memory_holds_while_comet_is_up(
    small_disk: Path, server: CometStandIn, tmp_path: Path
) -> None:
    """The outbox cannot take a byte; Comet is up: the held samples go straight from memory."""
    settings = load_settings(
        environ={}, home=tmp_path, cwd=tmp_path, system_config=tmp_path / "none.toml"
    )
    outbox = Outbox(small_disk / "outbox.sqlite3")
    sink = RestSink(CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=3))
    delivery = Delivery(outbox, sink, settings)
    delivery.start()
    try:
        _fill(small_disk)
        assert not delivery.put([_sample(n) for n in range(20)])  # held in memory
        wait_until(lambda: delivery.held == 0, timeout_s=15)  # was: held until lost
        values = [i["metricValue"] for i in server.metric_items()]
        assert values == list(range(20))
        assert delivery.put([_sample(20)]) is False  # the disk is still full
        wait_until(lambda: len(server.metric_items()) == 21, timeout_s=15)
    finally:
        delivery.flush(2)
        sink.close()
        outbox.close()
