"""The command line as a user meets it: help, errors that name what was typed, suggestions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, clean_env, run_agent
from tests.offline_run import KEY, typical_messages, write_archive

COMMANDS = (
    "run",
    "start",
    "sysinfo",
    "sample",
    "api",
    "upload",
    "status",
    "report",
    "doctor",
    "top",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_says_each_default_once(command: str, tmp_path: Path) -> None:
    """No argparse "(default: None)" after a text that already says "(default 30)"."""
    result = run_agent([command, "--help"], clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for meaningless in ("None", "False", "True", "[]"):
        assert f"(default: {meaningless})" not in text
    assert not re.search(r"\(default[^)]*\) \(default", text), text


def test_a_bad_flag_value_names_the_flag_as_typed(tmp_path: Path) -> None:
    """`--cpu-interval 0` is blamed on --cpu-interval, not the setting's name --cpu-interval-s."""
    result = run_agent(["start", "--offline", "--cpu-interval", "0"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "(--cpu-interval)" in result.stderr
    assert "--cpu-interval-s" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("stat", "status"), ("reprot", "report"), ("sampel", "sample"), ("upolad", "upload")],
)
def test_a_mistyped_command_gets_a_suggestion(typed: str, meant: str, tmp_path: Path) -> None:
    """`comet-agent stat`: one line, exit 2, "did you mean 'status'?"."""
    result = run_agent([typed], clean_env(tmp_path))
    assert result.returncode == 2
    assert f"did you mean '{meant}'?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_mistyped_choice_gets_a_suggestion(tmp_path: Path) -> None:
    """Choices of an option are suggested too: --log-level debg."""
    result = run_agent(["status", "--log-level", "debg"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "did you mean 'debug'?" in result.stderr


def test_a_mistyped_option_gets_a_suggestion(tmp_path: Path) -> None:
    """`start --cpu-intervl 5`: "did you mean '--cpu-interval'?", one line, exit 2."""
    result = run_agent(["start", "--cpu-intervl", "5"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "did you mean '--cpu-interval'?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_nothing_close_gets_no_suggestion(tmp_path: Path) -> None:
    """A word like no command is refused without a made-up guess."""
    result = run_agent(["zzzzqqq"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "did you mean" not in result.stderr


def test_upload_takes_the_sdk_spellings(server: CometStandIn, tmp_path: Path) -> None:
    """`--project-name P` is `--project P`; `--force-upload` sends an uploaded archive again."""
    write_archive(tmp_path / "offline", typical_messages(samples=1))
    env = clean_env(
        tmp_path / "home",
        {
            "COMET_API_KEY": CANARY_KEY,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        },
    )
    archive = tmp_path / "offline" / f"{KEY}.zip"
    first = run_agent(["upload", str(archive), "--project-name", "other"], env)
    assert first.returncode == 0, first.stderr
    runs = [r.body for r in server.received("add-run") if isinstance(r.body, dict)]
    assert [r.get("projectName") for r in runs] == ["other"]
    moved = tmp_path / "offline" / "uploaded" / f"{KEY}.zip"
    again = run_agent(["upload", str(moved)], env)
    assert "already uploaded" in again.stdout and "--force-upload" in again.stdout
    forced = run_agent(["upload", str(moved), "--force-reupload"], env)
    assert forced.returncode == 0, forced.stderr
    runs = [r.body for r in server.received("add-run") if isinstance(r.body, dict)]
    assert len(runs) == 2
    assert runs[1].get("experimentKey") not in (None, KEY)  # a new experiment, as the SDK does


def test_no_workspace_uses_the_api_keys_default(server: CometStandIn, tmp_path: Path) -> None:
    """Unset workspace: the key's default (GET account-details), as comet_ml's API does."""
    env = clean_env(
        tmp_path / "home",
        {
            "COMET_API_KEY": CANARY_KEY,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        },
    )
    result = run_agent(["run", "--", "true"], env, timeout_s=120)
    assert result.returncode == 0, result.stderr
    assert server.count("account-details") == 1
    created = [r.body for r in server.received("add-run")]
    assert created and all(
        isinstance(b, dict) and b["teamName"] == "stand-in-default" for b in created
    )


def test_no_workspace_and_no_default_is_one_line_exit_2(
    server: CometStandIn, tmp_path: Path
) -> None:
    """If Comet names no default workspace, `start` says how to set one (its last line), keeps
    what it sampled offline, and exits 2."""
    server.default_workspace = None
    env = clean_env(
        tmp_path / "home",
        {
            "COMET_API_KEY": CANARY_KEY,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        },
    )
    result = run_agent(["start"], env, timeout_s=60)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "creating an experiment needs a workspace" in last and "COMET_WORKSPACE" in last
    assert "offline archive written to" in result.stderr
    assert server.count("add-run") == 0


def _top_screen(args: list[str], env: dict[str, str]) -> str:
    """`top -n 1 ARGS` on a pseudo-terminal: what it drew (exit 0 checked)."""
    import os
    import pty
    import subprocess

    from tests.helpers import agent_argv

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*agent_argv(), "top", "-n", "1", "--interval", "0.5", *args],
        stdin=follower, stdout=follower, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the agent closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    assert proc.stderr is not None
    proc.stderr.close()
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_top_draws_one_screen_on_a_terminal(tmp_path: Path) -> None:
    """`top -n 1` on a pseudo-terminal: a cleared screen of human units, then exit 0."""
    import os

    screen = _top_screen(["--pid", str(os.getpid())], clean_env(tmp_path))
    assert screen.startswith("\x1b[H\x1b[2Jcomet-agent top · ")
    assert re.search(r"\nmemory +total [\d.]+ GiB", screen), screen
    assert re.search(r"\nprocess +cpu_percent [\d.]+ % · rss_bytes [\d.]+ MiB", screen), screen


def test_top_samples_the_mounted_host_root(tmp_path: Path) -> None:
    """`top --host-root DIR` shows that host (the fixture's 31.2 GiB and load 1.25), as
    `sample` does: it read this machine's /proc before."""
    from tests.helpers import ROOT

    host = ROOT / "tests" / "fixtures" / "host-plain"
    env = clean_env(tmp_path, {"COMET_AGENT_SAMPLE_DISK": "false"})
    screen = _top_screen(["--host-root", str(host)], env)
    assert "\nmemory   total 31.2 GiB · used 7.8 GiB" in screen, screen
    assert "\nload     avg 1.25\n" in screen, screen


def test_top_off_a_terminal_says_what_to_use(tmp_path: Path) -> None:
    """Piped, `top` is one line pointing at `sample --json`, exit 2."""
    result = run_agent(["top", "-n", "1"], clean_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr == (
        "comet-agent: top redraws a terminal; off one use 'comet-agent sample --json'\n"
    )
