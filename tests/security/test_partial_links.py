"""A partial archive directory with planted links: nothing outside it is read, zipped or sent."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from agent.archive import finalize_partial, read_archive
from tests.offline_run import KEY
from tests.test_archive import SAMPLE_BYTES, SPEC_EXPERIMENT

PRIVATE_TEXT = "root-only secret: do not upload\n"


def _planted(tmp_path: Path) -> Path:
    secret = tmp_path / "shadow"
    secret.write_text(PRIVATE_TEXT)
    partial = tmp_path / "offline" / f"{KEY}.partial"
    partial.mkdir(parents=True)
    (partial / "experiment.json").write_text(json.dumps({**SPEC_EXPERIMENT, "offline_id": KEY}))
    (partial / "messages.json").write_bytes(SAMPLE_BYTES)
    (partial / "notes.txt").symlink_to(secret)  # an extra member: a link to a file of root's
    return partial


def test_finalize_leaves_planted_links_out_of_the_zip(tmp_path: Path) -> None:
    """finalize (what upload and recovery run) zips regular files only."""
    done = finalize_partial(_planted(tmp_path))
    with zipfile.ZipFile(done.path) as zf:
        assert "notes.txt" not in zf.namelist()
        assert all(PRIVATE_TEXT.encode() not in zf.read(n) for n in zf.namelist())


def test_a_linked_messages_file_is_not_read(tmp_path: Path) -> None:
    """messages.json itself a link: the reader refuses to follow it (a problem, not its text)."""
    partial = _planted(tmp_path)
    (partial / "messages.json").unlink()
    (partial / "messages.json").symlink_to(tmp_path / "shadow")
    with read_archive(partial) as archive:
        assert list(archive.lines()) == []
        assert "messages.json" not in archive.names
