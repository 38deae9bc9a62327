"""`upload` of what is not an offline archive: one line, exit 2, nothing sent, nothing moved."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, ROOT, clean_env, run_agent
from tests.offline_run import typical_messages, write_archive


def _env(server: CometStandIn, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        tmp_path / "home",
        {
            "COMET_API_KEY": CANARY_KEY,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        },
    )


def _readme(tmp: Path) -> Path:
    copy = tmp / "README.md"
    copy.write_bytes((ROOT / "README.md").read_bytes())
    return copy


def _garbage_zip(tmp: Path) -> Path:
    path = tmp / "0123456789abcdef0123456789abcdef.zip"
    path.write_bytes(os.urandom(4096))
    return path


def _foreign_zip(tmp: Path) -> Path:
    path = tmp / "photos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cat.txt", "not an experiment")
    return path


@pytest.mark.parametrize("make", [_readme, _garbage_zip, _foreign_zip], ids=lambda f: f.__name__)
def test_junk_is_refused_before_anything_is_sent(
    server: CometStandIn, tmp_path: Path, make: object
) -> None:
    """A README, random bytes named .zip, a zip of something else: exit 2, one line."""
    junk = make(tmp_path)  # type: ignore[operator]
    before = junk.read_bytes()
    done = run_agent(["upload", str(junk)], _env(server, tmp_path))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "is not an offline archive" in line and "nothing was sent or moved" in line
    assert server.requests == []
    assert junk.read_bytes() == before  # still there, untouched
    assert not (tmp_path / "uploaded").exists()


def test_a_real_archive_still_uploads(server: CometStandIn, tmp_path: Path) -> None:
    """The check lets a real archive through (and the server learns of its experiment)."""
    archive = write_archive(tmp_path / "offline", typical_messages(samples=2)).path
    server.experiments.clear()
    done = run_agent(["upload", str(archive)], _env(server, tmp_path))
    assert done.returncode == 0, done.stderr
    assert server.count("log-metric-batch") >= 1
