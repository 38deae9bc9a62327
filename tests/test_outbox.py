"""Outbox: a durable FIFO in a real SQLite file, its size cap, and how it fails."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.delivery.outbox import CorruptOutbox, Outbox, row_size
from agent.errors import OutboxError
from agent.message import Kind, Message

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000_000


def metric(n: int, kind: Kind = Kind.SAMPLE, pad: int = 0) -> Message:
    """A metric-batch message whose value and timestamp say which one it is."""
    item = {
        "metricName": "sys.cpu.percent.avg",
        "metricValue": n,
        "step": None,
        "epoch": None,
        "context": "x" * pad or None,
        "timestamp": T0 + n,
    }
    return Message("log-metric-batch", KEY, {"values": [item]}, T0 + n, kind)


def values(stored: list) -> list[int]:  # type: ignore[type-arg]
    return [s.message.body["values"][0]["metricValue"] for s in stored]


class Clock:
    """A settable millisecond clock."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture(name="box")
def _box(tmp_path: Path) -> Outbox:
    with Outbox(tmp_path / "state" / "outbox.db") as box:
        yield box  # type: ignore[misc]


def test_lease_is_oldest_first_and_ack_removes(box: Outbox) -> None:
    """Rows come out in insertion order, whole and unchanged; acked rows are gone."""
    ids = [box.put(metric(n)) for n in range(5)]
    assert ids == sorted(ids)
    first = box.lease(3)
    assert [s.id for s in first] == ids[:3]
    assert first[0].message == metric(0)  # body, key, timestamp and kind survive the round trip
    assert values(box.lease(10)) == [3, 4]
    assert box.lease(10) == []
    box.ack([s.id for s in first])
    stats = box.stats()
    assert (stats.ready, stats.leased, stats.dead) == (0, 2, 0)
    assert stats.oldest_created_ms == T0 + 3


def test_put_many_is_one_ordered_transaction(box: Outbox) -> None:
    """put_many returns ascending ids in the order given."""
    ids = box.put_many([metric(n) for n in range(4)])
    assert ids == list(range(ids[0], ids[0] + 4))
    assert values(box.lease(10)) == [0, 1, 2, 3]


def test_attachment_survives_as_bytes(box: Outbox) -> None:
    """An attachment goes in and out as the same bytes."""
    patch = bytes(range(256)) * 4
    box.put(Message("upload-git-patch", KEY, {}, T0, Kind.FACT, patch))
    assert box.lease(1)[0].message.attachment == patch


def test_lease_skips_excluded_endpoints(box: Outbox) -> None:
    """An excluded endpoint's rows stay ready while others are leased."""
    box.put(metric(0))
    box.put(Message("add-load-metrics", KEY, {"loadAverage": 1.5, "timestamp": T0}, T0))
    leased = box.lease(10, exclude={"log-metric-batch"})
    assert [s.message.endpoint for s in leased] == ["add-load-metrics"]
    assert values(box.lease(10)) == [0]


def test_retry_later_waits_until_not_before(tmp_path: Path) -> None:
    """A deferred row is not leased before its time, counts the attempt and keeps the error;
    newer rows of its endpoint wait behind it (no overtaking), other endpoints do not."""
    clock = Clock()
    with Outbox(tmp_path / "o.db", clock=clock) as box:
        box.put(metric(0))
        box.put(metric(1))
        box.put(Message("log-other", KEY, {"key": "k", "value": 1}, T0, Kind.FACT))
        rows = box.lease(1)
        box.retry_later([rows[0].id], T0 + 5_000, "HTTP 503")
        assert [s.message.endpoint for s in box.lease(10)] == ["log-other"]
        assert box.next_ready_ms() == T0 + 5_000
        assert box.next_ready_ms(exclude={"log-metric-batch"}) is None
        clock.now = T0 + 4_999
        assert box.lease(10) == []
        clock.now = T0 + 5_000
        again = box.lease(10)
        assert values(again) == [0, 1]
        assert (again[0].attempts, again[0].last_error) == (1, "HTTP 503")


def test_reopen_retries_waiting_rows_at_once_in_order(tmp_path: Path) -> None:
    """A new process knows of no outage: waiting rows are ready at once, oldest first."""
    clock = Clock()
    with Outbox(tmp_path / "o.db", clock=clock) as box:
        box.put_many([metric(0), metric(1)])
        box.retry_later([box.lease(1)[0].id], T0 + 60_000, "HTTP 503")
    with Outbox(tmp_path / "o.db", clock=clock) as box:
        assert values(box.lease(10)) == [0, 1]


def test_release_counts_no_attempt(box: Outbox) -> None:
    """A released row is ready at once, with its attempt count unchanged."""
    box.put(metric(0))
    box.release([s.id for s in box.lease(1)])
    again = box.lease(1)
    assert values(again) == [0]
    assert again[0].attempts == 0


def test_reject_keeps_dead_letters_out_of_leases(box: Outbox) -> None:
    """A rejected row is kept and counted, with its reason, and never leased again."""
    box.put_many([metric(0), metric(1)])
    first = box.lease(1)
    box.reject([first[0].id], "HTTP 400: bad field")
    assert values(box.lease(10)) == [1]
    assert box.stats().dead == 1
    dead = box.dead_letters(10)
    assert values(dead) == [0]
    assert dead[0].last_error == "HTTP 400: bad field"
    assert box.pending() == 1  # the leased one; the dead letter is not pending


def test_state_table_round_trips_and_persists(tmp_path: Path) -> None:
    """get_state/set_state keep small values across a reopen."""
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        assert box.get_state("experiment_key") is None
        box.set_state("experiment_key", KEY)
        box.set_state("experiment_key", KEY[::-1])
    with Outbox(path) as box:
        assert box.get_state("experiment_key") == KEY[::-1]


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """The state directory is created 0700 and the database, -wal and -shm are 0600."""
    old = os.umask(0)
    try:
        with Outbox(tmp_path / "new" / "state" / "outbox.db") as box:
            box.put(metric(0))
            files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in box.path.parent.iterdir()}
            mode = stat.S_IMODE(box.path.parent.stat().st_mode)
    finally:
        os.umask(old)
    assert mode == 0o700
    assert files == {"outbox.db": 0o600, "outbox.db-wal": 0o600, "outbox.db-shm": 0o600}


def test_size_cap_drops_samples_then_output_never_facts(tmp_path: Path) -> None:
    """Past the cap the oldest SAMPLE rows go, then OUTPUT; FACT rows stay even over it."""
    size = row_size(metric(10))
    assert all(row_size(metric(n, k)) == size for n in range(10, 100) for k in Kind)
    path = tmp_path / "o.db"
    with capture_logs() as logs, Outbox(path, max_bytes=6 * size) as box:
        box.put_many([metric(10, Kind.FACT), metric(11, Kind.SAMPLE), metric(12, Kind.OUTPUT)])
        box.put_many([metric(13, Kind.SAMPLE), metric(14, Kind.OUTPUT), metric(15, Kind.SAMPLE)])
        assert box.stats().dropped_total == 0  # exactly at the cap: nothing dropped
        box.put(metric(16, Kind.FACT))  # one row too many: the oldest sample goes
        assert values(box.lease(100)) == [10, 12, 13, 14, 15, 16]
        box.release(range(1, 100))
        box.put_many([metric(17, Kind.FACT), metric(18, Kind.FACT)])  # two more samples go
        box.put_many([metric(19, Kind.FACT), metric(20, Kind.FACT)])  # then the two outputs
        assert values(box.lease(100)) == [10, 16, 17, 18, 19, 20]
        box.release(range(1, 100))
        box.put(metric(21, Kind.FACT))  # only facts left: kept over the cap
        stats = box.stats()
        assert stats.bytes == 7 * size
        assert stats.dropped_by_kind == {"sample": 3, "output": 2}
        assert stats.dropped_total == 5
    overflow = [e for e in logs if e["event"] == "outbox.overflow"]
    assert len(overflow) == 1  # rate-limited: one line for the first drop, the rest counted
    assert (overflow[0]["dropped_sample"], overflow[0]["log_level"]) == (1, "warning")
    with Outbox(path, max_bytes=6 * size) as box:
        assert box.stats().dropped_by_kind == {"sample": 3, "output": 2}  # persisted
        assert values(box.lease(100)) == [10, 16, 17, 18, 19, 20, 21]


def test_size_cap_spares_leased_rows(tmp_path: Path) -> None:
    """A sample on its way out is not dropped; the next oldest unleased one is."""
    size = row_size(metric(0))
    with Outbox(tmp_path / "o.db", max_bytes=2 * size) as box:
        box.put_many([metric(0), metric(1)])
        box.lease(1)
        box.put(metric(2))
        assert box.stats().dropped_by_kind == {"sample": 1}
        assert values(box.lease(10)) == [2]


def test_threads_share_one_outbox(box: Outbox) -> None:
    """Four writer threads and a reader that acks: every message exactly once."""

    def write(base: int) -> None:
        for n in range(base, base + 200):
            box.put(metric(n))

    writers = [threading.Thread(target=write, args=(b,)) for b in (0, 1000, 2000, 3000)]
    for t in writers:
        t.start()
    seen: list[int] = []
    while any(t.is_alive() for t in writers) or box.pending():
        rows = box.lease(50)
        seen.extend(values(rows))
        box.ack([s.id for s in rows])
    for t in writers:
        t.join()
    assert sorted(seen) == [b + n for b in (0, 1000, 2000, 3000) for n in range(200)]
    assert box.stats().bytes == 0


CHILD_PUTS = """
import sys
from pathlib import Path
from agent.message import Kind, Message
from agent.delivery.outbox import Outbox
box = Outbox(Path(sys.argv[1]))
n = 0
while True:
    item = {"metricName": "m", "metricValue": n, "step": None, "epoch": None,
            "context": None, "timestamp": int(sys.argv[3]) + n}
    msg = Message("log-metric-batch", sys.argv[2], {"values": [item]}, int(sys.argv[3]) + n)
    print(box.put(msg), flush=True)
    n += 1
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_returned_put_survives_kill_9(tmp_path: Path, seed: int) -> None:
    """Kill -9 at a random instant: every id the child saw returned is there after reopen."""
    path = tmp_path / "o.db"
    wanted = random.Random(seed).randint(20, 2000)
    with subprocess.Popen(
        [sys.executable, "-c", CHILD_PUTS, str(path), KEY, str(T0)],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        seen = [int(child.stdout.readline()) for _ in range(wanted)]
        child.send_signal(signal.SIGKILL)
        seen += [int(line) for line in child.stdout.read().split()]
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    with Outbox(path) as box:
        rows = box.lease(len(seen) + 10)
    stored = {s.id: s.message.body["values"][0]["metricValue"] for s in rows}  # type: ignore[index]
    assert set(seen) <= set(stored), f"lost ids {sorted(set(seen) - set(stored))[:10]}"
    assert all(stored[i] == i - 1 for i in seen)  # ids start at 1, values at 0


CHILD_LEASES = """
import os, sys
from pathlib import Path
from agent.delivery.outbox import Outbox
box = Outbox(Path(sys.argv[1]))
print([s.id for s in box.lease(3)], flush=True)
os.kill(os.getpid(), 9)
"""


def test_leases_of_a_killed_process_come_back_ready(tmp_path: Path) -> None:
    """Rows leased by a process that died are ready again, no attempt counted."""
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.put_many([metric(n) for n in range(5)])
    done = subprocess.run(
        [sys.executable, "-c", CHILD_LEASES, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.strip() == "[1, 2, 3]"
    with Outbox(path) as box:
        rows = box.lease(10)
    assert values(rows) == [0, 1, 2, 3, 4]
    assert [s.attempts for s in rows] == [0] * 5


def test_corrupt_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """A file that is not SQLite raises CorruptOutbox naming it and the fix; it is untouched."""
    path = tmp_path / "outbox.db"
    garbage = b"this is not a database, it is a shopping list\n" * 100
    path.write_bytes(garbage)
    with pytest.raises(CorruptOutbox) as caught:
        Outbox(path)
    text = str(caught.value)
    assert str(path) in text and "corrupt" in text and "move it aside" in text
    assert "\n" not in text
    assert isinstance(caught.value, OutboxError)
    assert path.read_bytes() == garbage


def test_recover_moves_the_corrupt_file_aside(tmp_path: Path) -> None:
    """recover=True renames the bad file to outbox.db.corrupt-<time> and starts empty."""
    path = tmp_path / "outbox.db"
    garbage = b"\x00garbage" * 1000
    path.write_bytes(garbage)
    with capture_logs() as logs, Outbox(path, recover=True, clock=Clock()) as box:
        assert box.stats().ready == 0
        box.put(metric(0))
    kept = tmp_path / "outbox.db.corrupt-20231114T221320Z"
    assert kept.read_bytes() == garbage
    assert [e["event"] for e in logs] == ["outbox.corrupt"]
    assert logs[0]["moved_to"] == str(kept)
    assert logs[0]["salvaged"] == 0


def test_unwritable_place_raises_outbox_error(tmp_path: Path) -> None:
    """A state directory that cannot be created names the path and what to change."""
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    with pytest.raises(OutboxError) as caught:
        Outbox(blocker / "state" / "outbox.db")
    text = str(caught.value)
    assert str(blocker / "state" / "outbox.db") in text
    assert "writable" in text and "state_directory" in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions; covered above")
def test_read_only_directory_raises_outbox_error(tmp_path: Path) -> None:
    """A 0500 state directory gives one line naming the outbox, not a traceback."""
    state = tmp_path / "state"
    state.mkdir(mode=0o500)
    try:
        with pytest.raises(OutboxError, match="writable"):
            Outbox(state / "outbox.db")
    finally:
        state.chmod(0o700)


CHILD_FILLS = """
import resource, signal, sys
from pathlib import Path
from agent.errors import OutboxError
from agent.message import Message
from agent.delivery.outbox import Outbox
box = Outbox(Path(sys.argv[1]))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
for n in range(100_000):
    try:
        got = box.put(Message("log-other", sys.argv[2], {"key": "k", "value": str(n) * 300}, 1))
    except OutboxError as exc:
        print("ERROR", exc, flush=True)
        break
    print(got, flush=True)
try:
    box.put(Message("log-other", sys.argv[2], {"key": "k", "value": "again"}, 1))
    print("SECOND PUT STORED", flush=True)
except OutboxError:
    print("SECOND PUT RAISED", flush=True)
"""


def test_disk_full_raises_and_keeps_what_was_stored(tmp_path: Path) -> None:
    """EFBIG (a file-size limit, as a full disk) raises OutboxError; earlier puts all survive."""
    path = tmp_path / "o.db"
    done = subprocess.run(
        [sys.executable, "-c", CHILD_FILLS, str(path), KEY],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 1, lines[-3:]
    assert str(path) in errors[0] and "max_bytes" in errors[0]
    assert lines[-1] == "SECOND PUT RAISED"
    ids = [int(line) for line in lines if line.isdigit()]
    assert len(ids) > 10
    with Outbox(path) as box:
        rows = box.lease(100_000)
        assert [s.id for s in rows] == ids  # all returned puts, and nothing else
        assert [s.message.body["value"] for s in rows] == [str(n) * 300 for n in range(len(ids))]
        box.put(metric(0))  # with the limit gone the same file takes writes again


def test_closed_outbox_raises_outbox_error(tmp_path: Path) -> None:
    """Using an outbox after close() is an OutboxError, not a sqlite3 exception."""
    box = Outbox(tmp_path / "o.db")
    box.close()
    with pytest.raises(OutboxError, match="after close"):
        box.put(metric(0))


def _damage(path: Path, pages: range) -> None:
    """Overwrite whole data pages with noise, as a bad disk or a half-copied file does."""
    size = 4096
    noise = random.Random(7).randbytes(size * len(pages))
    with path.open("r+b") as f:
        f.seek(pages.start * size)
        f.write(noise)


def test_damaged_pages_are_salvaged_and_the_file_moved_aside(tmp_path: Path) -> None:
    """Rows on good pages survive into a new outbox; the damaged file is kept aside; one line."""
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put_many([metric(n, pad=600) for n in range(300)])
    _damage(path, range(30, 33))
    with pytest.raises(CorruptOutbox):  # found at open, not at some later read
        Outbox(path)
    with capture_logs() as logs, Outbox(path, recover=True, clock=Clock()) as box:
        kept = values(box.lease(1000))
        box.put(metric(1000))
    assert 200 < len(kept) < 300
    assert kept == sorted(kept) and set(kept) <= set(range(300))
    assert [e["event"] for e in logs] == ["outbox.corrupt"]
    assert logs[0]["salvaged"] == len(kept)
    assert (tmp_path / "outbox.db.corrupt-20231114T221320Z").exists()
    with Outbox(path) as box:  # the new file is whole
        assert box.stats().ready == len(kept) + 1


def test_an_undecodable_row_becomes_a_dead_letter_and_the_rest_is_leased(box: Outbox) -> None:
    """Invalid UTF-8 in one body: that row is dead (with why), the others go, nothing raises."""
    import sqlite3

    box.put_many([metric(0), metric(1), metric(2)])
    with sqlite3.connect(box.path) as raw:
        raw.execute("UPDATE messages SET body = ? WHERE id = 2", (b"\xff\xfe{",))
    with capture_logs() as logs:
        assert values(box.lease(10)) == [0, 2]
    assert box.stats().dead == 1 and box.pending() == 2
    (dead,) = box.dead_letters()
    assert "undecodable" in (dead.last_error or "")
    assert [e["event"] for e in logs] == ["outbox.undecodable"]
