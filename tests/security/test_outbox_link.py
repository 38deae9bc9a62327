"""A link at the outbox's name is refused, never followed (the target keeps its mode and bytes)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import clean_env, run_agent


def test_outbox_link_is_not_followed(tmp_path: Path) -> None:
    """outbox.sqlite3 -> another file: `start` stops with one line; the file is untouched."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_text("not an outbox\n")
    target.chmod(0o644)
    (state / "outbox.sqlite3").symlink_to(target)
    env = clean_env(tmp_path / "home", {"COMET_AGENT_STATE_DIRECTORY": str(state)})
    result = run_agent(["start", "--offline"], env, timeout_s=60)
    assert result.returncode == 1, result.stderr
    assert "cannot create the outbox" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert target.read_text() == "not an outbox\n"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob("precious*corrupt*"))
