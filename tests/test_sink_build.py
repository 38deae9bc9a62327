"""Delivery builds and owns its sinks: the offline archive, the local copy, the fall-back.

Real parts only: a SQLite outbox and archives in temp directories; an unusable
directory is a plain file where the directory should be. No request is made:
the REST sink is lazy and no sender is started.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from agent import log
from agent.api import bodies
from agent.archive import read_archive
from agent.config import Settings
from agent.delivery.outbox import Outbox
from agent.delivery.pipeline import Delivery
from agent.delivery.sinks.build import SinkBuilder
from agent.errors import AgentError
from agent.message import Message
from tests.offline_run import KEY, T0

OTHER = "fedcba9876543210fedcba9876543210"


def _logs() -> io.StringIO:
    stream = io.StringIO()
    log.configure(fmt="json", stream=stream)
    return stream


def _events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def _metric(key: str, n: int) -> Message:
    body = bodies.metric_batch([bodies.metric_item("sys.cpu.percent.avg", n, T0 + n)])
    return Message("log-metric-batch", key, body, T0 + n)


def _unusable(tmp_path: Path) -> Path:
    """A file where a directory should be: nothing can be made in it."""
    path = tmp_path / "not-a-dir"
    path.write_text("")
    return path


def test_fall_back_offline_moves_the_outbox_into_an_archive_it_then_zips(
    tmp_path: Path,
) -> None:
    """An online run whose experiment never existed: its rows go into <key>.zip (resumable:
    get_or_create), an adopted run's row stays a dead letter, and the outbox is left empty."""
    settings = Settings(offline_directory=tmp_path / "offline")
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    delivery = Delivery.build(outbox, KEY, SinkBuilder(settings, T0), offline=False)
    assert delivery.put([_metric(KEY, 1), _metric(OTHER, 2), _metric(KEY, 3)])

    assert delivery.fall_back_offline(KEY, "refused") == 2
    stats = outbox.stats()
    assert (stats.ready, stats.leased, stats.dead) == (0, 0, 1)
    assert outbox.dead_letters()[0].message.experiment_key == OTHER
    delivery.close_sinks()
    outbox.close()

    kept = delivery.kept
    assert kept is not None and kept.path.parent == tmp_path / "offline"
    assert kept.path.name.startswith(KEY) and kept.path.suffix == ".zip"
    assert delivery.local_archive is kept
    with zipfile.ZipFile(kept.path) as zf:
        experiment = json.loads(zf.read("experiment.json"))
    assert experiment["resume_strategy"] == "get_or_create"
    with read_archive(kept.path) as archive:
        values = [
            line.payload["metric"]["metricValue"]  # type: ignore[index]
            for line in archive.lines()
            if line.type == "metric_msg"
        ]
    assert values == [1, 3]


def test_fall_back_offline_keeps_the_outbox_when_no_archive_opens(tmp_path: Path) -> None:
    """The offline directory is unusable: nothing moves, one `outbox.kept` names the reason."""
    stream = _logs()
    settings = Settings(offline_directory=_unusable(tmp_path))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    delivery = Delivery.build(outbox, KEY, SinkBuilder(settings, T0), offline=False)
    delivery.put([_metric(KEY, 1)])

    assert delivery.fall_back_offline(KEY, "Comet did not answer") is None
    assert outbox.stats().ready == 1
    assert delivery.kept is None
    (kept,) = [e for e in _events(stream) if e["event"] == "outbox.kept"]
    assert kept["reason"] == "Comet did not answer"
    outbox.close()


def test_an_offline_delivery_writes_elsewhere_under_run_and_fails_otherwise(
    tmp_path: Path,
) -> None:
    """`run` (a fallback place given): the archive opens there, said once; `start`: an error."""
    stream = _logs()
    settings = Settings(offline=True, offline_directory=_unusable(tmp_path))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    with pytest.raises(AgentError):
        Delivery.build(outbox, KEY, SinkBuilder(settings, T0), offline=True)

    instead = tmp_path / "state" / "offline"
    sinks = SinkBuilder(settings, T0, fallback=instead)
    delivery = Delivery.build(outbox, KEY, sinks, offline=True)
    assert delivery.offline and delivery.sender is None
    assert delivery.put([_metric(KEY, 1)])
    assert outbox.stats().ready == 0  # offline, the archive is the durable store
    delivery.close_sinks()
    outbox.close()
    assert delivery.kept is not None and delivery.kept.path == instead / f"{KEY}.zip"
    (fallback,) = [e for e in _events(stream) if e["event"] == "offline.fallback"]
    assert fallback["instead"] == str(instead)


def test_the_local_copy_is_built_closed_and_best_effort(tmp_path: Path) -> None:
    """With local_copy the online delivery keeps a zip of what it queued in online/; in an
    unusable directory it warns once and delivers without one."""
    settings = Settings(offline_directory=tmp_path / "offline", local_copy=True)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    delivery = Delivery.build(outbox, KEY, SinkBuilder(settings, T0), offline=False)
    assert delivery.copy is not None and delivery.local_archive is delivery.copy
    delivery.put([_metric(KEY, 1)])
    delivery.checkpoint()
    delivery.close_sinks()
    outbox.close()
    assert delivery.kept is None  # the copy is no archive the run ends in: no upload hint
    assert delivery.copy.path.parent == tmp_path / "offline" / "online"
    assert delivery.copy.path.name.startswith(KEY) and delivery.copy.path.suffix == ".zip"

    stream = _logs()
    settings = Settings(offline_directory=_unusable(tmp_path), local_copy=True)
    outbox = Outbox(tmp_path / "outbox2.sqlite3")
    delivery = Delivery.build(outbox, KEY, SinkBuilder(settings, T0), offline=False)
    assert delivery.copy is None and delivery.local_archive is None
    assert delivery.put([_metric(KEY, 1)])
    outbox.close()
    assert [e["event"] for e in _events(stream)] == ["local_copy.unavailable"]
