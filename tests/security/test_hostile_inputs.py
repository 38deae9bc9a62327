"""Hostile inputs to the command line: one line naming the culprit, never "unexpected error"."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import CANARY_KEY, clean_env, run_agent


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "unexpected error" not in lines[0]
    return lines[0]


def test_a_binary_experiment_key_file(tmp_path: Path) -> None:
    """A follower reading a key file of random bytes: exit 2, naming the file."""
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\x8c\xff\x00\x01" + os.urandom(60))
    done = run_agent(
        ["start", "--experiment-key-file", str(key_file)],
        clean_env(
            tmp_path / "home",
            {"COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "s"), "COMET_AGENT_ROLE": "follower"},
        ),
    )
    assert done.returncode == 2
    assert "is not text" in _one_line(done.stderr)


def test_a_body_nested_too_deeply(tmp_path: Path) -> None:
    """`api --body` of 100,000 nested lists: exit 2, one line."""
    body = tmp_path / "body.json"
    body.write_text("[" * 100_000 + "]" * 100_000)
    done = run_agent(
        ["api", "log-other", "--experiment-key", "0123456789abcdef0123456789abcdef",
         "--body", f"@{body}"],
        clean_env(tmp_path / "home", {"COMET_API_KEY": CANARY_KEY}),
    )  # fmt: skip
    assert done.returncode == 2
    assert "--body cannot be read as JSON (nested too deeply)" in _one_line(done.stderr)


def test_a_status_file_with_a_huge_integer(tmp_path: Path) -> None:
    """status.json holding a 5,000-digit number: exit 2, naming the file."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "status.json").write_text('{"pid": ' + "9" * 5000 + "}")
    done = run_agent(["status", "--state-dir", str(state)], clean_env(tmp_path / "home"))
    assert done.returncode == 2
    assert "status.json cannot be read" in _one_line(done.stderr)
