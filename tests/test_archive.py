"""The archive format's rules, and reading damaged archives: everything readable, the rest named."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.archive import (
    Problem,
    check_experiment,
    check_line,
    dump_line,
    finalize_partial,
    find_archives,
    read_archive,
)
from agent.archive.convert import to_lines
from tests.offline_run import KEY, T0, typical_messages, write_archive
from tests.offline_spec import archive_lines, archive_violations

FIXTURES = Path(__file__).parent / "fixtures" / "offline"
# wire §6.3's sample lines, verbatim (README.md there says where from).
SPEC_SAMPLES = (FIXTURES / "spec-samples.jsonl").read_text().splitlines()
SPEC_EXPERIMENT = {
    "offline_id": "ffde77396b55408887078ab27afb14fe",
    "project_name": "oracle-project",
    "start_time": 1795930817091,
    "stop_time": 1795930818106,
    "tags": [],
    "workspace": "oracle-ws",
    "resume_strategy": "create",
    "customer_error_reported": False,
    "customer_error_message": None,
    "user_provided_experiment_key": False,
    "comet_start_sourced": False,
}


def metric(**changes: object) -> dict[str, object]:
    line = json.loads(SPEC_SAMPLES[6])
    line["payload"].update(changes)
    return line  # type: ignore[no-any-return]


@pytest.mark.parametrize("raw", SPEC_SAMPLES)
def test_spec_samples_are_valid_and_already_in_our_encoding(raw: str) -> None:
    """Every sample line of wire §6.3 passes, and dump_line writes it byte for byte."""
    assert check_line(json.loads(raw)) == []
    assert dump_line(json.loads(raw)) == raw.encode() + b"\n"


def test_spec_experiment_example_is_valid() -> None:
    """wire §6.2's example passes; dropping a required field does not."""
    assert check_experiment(SPEC_EXPERIMENT) == []
    broken = {k: v for k, v in SPEC_EXPERIMENT.items() if k != "stop_time"}
    assert check_experiment(broken) == ["stop_time must be integer milliseconds"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (
            metric(metric={"metricName": "x", "metricValue": 1, "step": None, "timestamp": 5}),
            "metric has keys the archive format does not allow: timestamp",
        ),
        (metric(context=None), "context must be a string, and left out when null"),
        (metric(local_timestamp=1.5e12), "local_timestamp must be integer milliseconds"),
        (
            metric(metric={"metricName": "x", "metricValue": None, "step": 1}),
            "metric.metricValue must be a finite number or a string",
        ),
        (
            metric(metric={"metricName": "x", "metricValue": 1}),
            "metric.step is missing",
        ),
        ({"type": "shiny_new", "payload": {}}, "unknown line type 'shiny_new'"),
        (
            {
                "type": "file_upload",
                "payload": {
                    **json.loads(SPEC_SAMPLES[10])["payload"],
                    "file_path": "../etc/passwd",
                },
            },
            "file_path must be the base name of a file in the archive",
        ),
    ],
)
def test_invalid_lines_are_named(line: dict[str, object], why: str) -> None:
    """Each wire §6.3 breach is reported in words (such lines are never written)."""
    assert why in check_line(line)


def test_system_details_without_a_required_key_is_invalid() -> None:
    """The uploader indexes machine directly: a line without it would be dropped there."""
    line = json.loads(SPEC_SAMPLES[3])
    del line["payload"]["machine"]
    assert check_line(line) == ["machine is missing"]


def test_dump_line_refuses_nan() -> None:
    """NaN is not JSON: the encoder refuses it rather than writing an invalid line."""
    with pytest.raises(ValueError, match="Out of range float"):
        dump_line({"v": float("nan")})


def make_zip(path: Path, messages: bytes, *, experiment: object = SPEC_EXPERIMENT) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if experiment is not None:
            zf.writestr("experiment.json", json.dumps(experiment))
        zf.writestr("messages.json", messages)
    return path


SAMPLE_BYTES = b"".join(raw.encode() + b"\n" for raw in SPEC_SAMPLES[:10])


def test_torn_last_line_is_dropped_and_named(tmp_path: Path) -> None:
    """A last line cut mid-way is dropped with its line number; the rest is read."""
    path = make_zip(tmp_path / "a.zip", SAMPLE_BYTES + b'{"payload":{"local_ti')
    with read_archive(path) as archive:
        numbers = [line.number for line in archive.lines()]
        assert numbers == list(range(1, 11))
        assert archive.problems == [
            Problem("messages.json", 11, "torn last line (21 bytes): dropped")
        ]


def test_invalid_line_in_the_middle_is_skipped_and_named(tmp_path: Path) -> None:
    """A bad line costs that line only, reported by number."""
    lines = SAMPLE_BYTES.split(b"\n")
    lines[2] = b'{"payload":{"message_id":3},"type":"cloud_details"}'
    lines[4] = b"not json"
    path = make_zip(tmp_path / "a.zip", b"\n".join(lines))
    with read_archive(path) as archive:
        assert [line.number for line in archive.lines()] == [1, 2, 4, 6, 7, 8, 9, 10]
        assert [(p.line, p.why) for p in archive.problems] == [
            (3, "provider must be a string and cloud_metadata an object"),
            (5, "not JSON"),
        ]


def test_zip_cut_short_is_salvaged_from_its_local_headers(tmp_path: Path) -> None:
    """Without its central directory the zip is still read up to the cut, and the cut named."""
    whole = write_archive(tmp_path / "made", typical_messages(samples=50)).path
    data = whole.read_bytes()
    cut = tmp_path / f"{KEY}-AbCdEf.zip"
    cut.write_bytes(data[: len(data) // 2])
    with read_archive(cut) as archive:
        assert archive.experiment["offline_id"] == KEY
        lines = list(archive.lines())
        full = archive_lines(whole)
        assert 10 < len(lines) < len(full)
        assert [ln.payload for ln in lines] == [f["payload"] for f in full[: len(lines)]]
        whys = [str(p) for p in archive.problems]
    assert f"{cut.name}: not a complete zip (cut short?); salvaging" in whys
    assert "messages.json: cut short; kept what could be read" in whys
    assert any(w.startswith("messages.json line ") and "torn last line" in w for w in whys)


def test_corrupt_bytes_stop_reading_at_the_damage(tmp_path: Path) -> None:
    """A damaged deflate stream: lines before the damage are read, the damage is named."""
    lines = [
        dump_line(
            {"type": "metric_msg", "payload": {"local_timestamp": T0 + i, "message_id": i,
             "metric": {"metricName": f"m{i % 7}", "metricValue": i * 1.5, "step": None,
                        "epoch": None}}}
        )
        for i in range(1, 20_000)
    ]  # fmt: skip
    path = make_zip(tmp_path / "a.zip", b"".join(lines))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("messages.json")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    middle = start + info.compress_size // 2
    data[middle : middle + 64] = os.urandom(64)
    path.write_bytes(bytes(data))
    with read_archive(path) as archive:
        read = list(archive.lines())
        assert 0 < len(read) < 19_999
        assert [ln.message_id for ln in read[:100]] == list(range(1, 101))
        assert any("unreadable" in p.why or "not JSON" in p.why for p in archive.problems)


def test_missing_experiment_json_is_named_and_the_key_comes_from_the_name(tmp_path: Path) -> None:
    """An archive without experiment.json still yields its lines and its key."""
    path = make_zip(tmp_path / f"{KEY}-QwErTy.zip", SAMPLE_BYTES, experiment=None)
    with read_archive(path) as archive:
        assert archive.offline_id == KEY
        assert len(list(archive.lines())) == 10
        assert archive.problems == [Problem("experiment.json", None, "missing")]


def test_not_a_zip_at_all_is_named(tmp_path: Path) -> None:
    """Random bytes: no lines, and problems that say so; never an exception."""
    path = tmp_path / "x.zip"
    path.write_bytes(os.urandom(4096))
    with read_archive(path) as archive:
        assert list(archive.lines()) == []
        assert {str(p) for p in archive.problems} >= {
            "x.zip: not a complete zip (cut short?); salvaging",
            "messages.json: missing from the archive",
        }


def test_partial_directory_is_read_as_is(tmp_path: Path) -> None:
    """The reader takes a partial directory like a zip (for report and dry runs)."""
    partial = tmp_path / f"{KEY}.partial"
    partial.mkdir()
    (partial / "experiment.json").write_text(json.dumps(SPEC_EXPERIMENT))
    (partial / "messages.json").write_bytes(SAMPLE_BYTES)
    with read_archive(partial) as archive:
        assert len(list(archive.lines())) == 10
        assert archive.problems == []


def test_recovery_drops_what_is_invalid_and_extends_the_stop_time(tmp_path: Path) -> None:
    """finalize_partial: torn tail and invalid lines out (named), stop_time up to the last line."""
    partial = tmp_path / f"{KEY}.partial"
    partial.mkdir()
    stale = {**SPEC_EXPERIMENT, "offline_id": KEY, "stop_time": T0}
    (partial / "experiment.json").write_text(json.dumps(stale))
    good = [metric(local_timestamp=T0 + 10 * i, message_id=i) for i in (1, 2, 3)]
    bad = metric(message_id=4, metric={"metricName": "x", "metricValue": 1, "step": 1, "unit": 1})
    body = b"".join(dump_line(x) for x in [*good[:2], bad, good[2]]) + b'{"payload":'
    (partial / "messages.json").write_bytes(body)
    done = finalize_partial(partial)
    assert done.path == tmp_path / f"{KEY}.zip"
    assert [str(p) for p in done.problems] == [
        "messages.json line 3: dropped: metric has keys the archive format does not allow: unit",
        "messages.json line 5: torn last line (11 bytes, no line end)",
    ]
    assert [ln["payload"]["message_id"] for ln in archive_lines(done.path)] == [1, 2, 3]  # type: ignore[index]
    with zipfile.ZipFile(done.path) as zf:
        assert json.loads(zf.read("experiment.json"))["stop_time"] == T0 + 30
    assert archive_violations(done.path) == []


def test_recovery_rebuilds_a_lost_experiment_json(tmp_path: Path) -> None:
    """No experiment.json (killed before the first write landed): rebuilt from the lines."""
    partial = tmp_path / f"{KEY}.partial"
    partial.mkdir()
    (partial / "messages.json").write_bytes(dump_line(metric(local_timestamp=T0 + 7)))
    done = finalize_partial(partial)
    assert str(done.problems[0]).startswith("experiment.json: unreadable")
    with zipfile.ZipFile(done.path) as zf:
        experiment = json.loads(zf.read("experiment.json"))
    assert (experiment["offline_id"], experiment["start_time"]) == (KEY, T0 + 7)
    assert archive_violations(done.path) == []


def test_find_archives_lists_zips_and_partials_oldest_first(tmp_path: Path) -> None:
    """Zips and partial directories, not temp files, not the uploaded/ folder."""
    for i, name in enumerate(["b.zip", "a.partial", ".c.zip.tmp", "notes.txt"]):
        path = tmp_path / name
        path.mkdir() if name.endswith(".partial") else path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
    (tmp_path / "uploaded").mkdir()
    (tmp_path / "uploaded" / "d.zip").write_bytes(b"x")
    assert [p.name for p in find_archives(tmp_path)] == ["b.zip", "a.partial"]


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    item=st.dictionaries(
        st.sampled_from(["metricName", "metricValue", "timestamp", "step", "epoch", "context"]),
        _ANY_VALUE,
    )
)
def test_a_converted_metric_item_is_a_valid_line_or_dropped(item: dict[str, object]) -> None:
    """to_lines writes metric lines without re-checking them: each one it keeps passes
    check_line, and each item it cannot write is counted as dropped."""
    converted = to_lines("log-metric-batch", {"values": [item]}, None, T0)
    assert len(converted.lines) + converted.dropped == 1
    for kind, payload in converted.lines:
        assert check_line({"type": kind, "payload": {**payload, "message_id": 1}}) == []
