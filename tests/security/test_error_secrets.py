"""Errors that carry the key back: a 401 that echoes it, a redirect to it, TLS, bad keys, crashes.

Bar: each ends with one line naming the culprit and the right exit status,
and not one 12-character piece of the canary key on stdout or stderr, in
either log format. A key that is malformed is described, never echoed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, run_agent
from tests.security.leaks import leaks_in
from tests.security.test_start_secrets import ECHO, REDIRECT

EXPERIMENT = "0123456789abcdef0123456789abcdef"
FORMATS = ["json", "console"]


def _shell_env(env: dict[str, str], tmp_path: Path, fmt: str) -> dict[str, str]:
    return {
        **env,
        "COMET_AGENT_LOG_LEVEL": "debug",
        "COMET_AGENT_LOG_FORMAT": fmt,
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline"),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_401_echoing_the_key(
    server: CometStandIn, env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    """`api` and `doctor` against a 401 whose msg holds the key: exit 1, the echo masked."""
    env = _shell_env(env, tmp_path, fmt)
    server.fail("keep-alive", status=401, body=ECHO)
    api = run_agent(["api", "keep-alive", "--experiment-key", EXPERIMENT], env, cwd=tmp_path)
    server.fail("registry-model-count", status=401, body=ECHO)
    doctor = run_agent(["doctor"], env, cwd=tmp_path)
    assert leaks_in(api.stdout + api.stderr) == []
    assert leaks_in(doctor.stdout + doctor.stderr) == []
    assert api.returncode == 1
    assert api.stderr.strip().endswith(
        "keep-alive: Comet rejected the API key (HTTP 401: stand-in does not like ***); "
        "set COMET_API_KEY, api_key_file or the comet-api-key credential"
    )
    assert doctor.returncode == 1
    assert "Comet rejected the API key from COMET_API_KEY" in doctor.stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_redirect_to_the_key(
    server: CometStandIn, env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    """A 302 whose Location carries the key: not followed, exit 1, the Location masked."""
    env = _shell_env(env, tmp_path, fmt)
    server.fail("keep-alive", status=302, headers=REDIRECT)
    api = run_agent(["api", "keep-alive", "--experiment-key", EXPERIMENT], env, cwd=tmp_path)
    assert leaks_in(api.stdout + api.stderr) == []
    assert api.returncode == 1
    assert "redirected to http://127.0.0.1:1/login?apiKey=***&next=/clientlib/" in api.stderr
    assert server.count("keep-alive", ok_only=False) == 1  # the redirect was not followed


def test_tls_failure(server: CometStandIn, env: dict[str, str], tmp_path: Path) -> None:
    """https:// to a server that speaks plain HTTP: the TLS error names the fix, not the key."""
    env = {
        **_shell_env(env, tmp_path, "json"),
        "COMET_URL_OVERRIDE": server.url.replace("http://", "https://"),
    }
    api = run_agent(["api", "keep-alive", "--experiment-key", EXPERIMENT], env, cwd=tmp_path)
    doctor = run_agent(["doctor"], env, cwd=tmp_path)
    assert leaks_in(api.stdout + api.stderr + doctor.stdout + doctor.stderr) == []
    assert api.returncode == 1
    assert f"keep-alive: TLS handshake with 127.0.0.1:{server.port} failed" in api.stderr
    assert doctor.returncode == 1
    assert "TLS handshake" in doctor.stdout


@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ("env", "the API key from COMET_API_KEY contains spaces"),
        ("file", "the API key from API key file"),
        ("ini", "the API key from api_key in"),
        ("non-ascii", "the API key from COMET_API_KEY contains spaces"),
    ],
)
def test_malformed_key_is_described_never_echoed(
    env: dict[str, str], tmp_path: Path, where: str, needle: str
) -> None:
    """A key with a space (env, key file, ~/.comet.config) or a non-ASCII letter: exit 2."""
    bad = f"{CANARY_KEY[:14]} {CANARY_KEY[14:]}"
    env = _shell_env(env, tmp_path, "json")
    if where == "env":
        env["COMET_API_KEY"] = bad
    elif where == "non-ascii":
        env["COMET_API_KEY"] = CANARY_KEY + "é"
    elif where == "file":
        del env["COMET_API_KEY"]
        (tmp_path / "key").write_text(bad + "\n")
        env["COMET_AGENT_API_KEY_FILE"] = str(tmp_path / "key")
    else:
        del env["COMET_API_KEY"]
        (Path(env["HOME"]) / ".comet.config").write_text(f"[comet]\napi_key = {bad}\n")
    for args in (["doctor"], ["start"], ["run", "--", "true"]):
        done = run_agent(args, env, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert needle in done.stderr
        assert "the key alone, on one line" in done.stderr
        assert leaks_in(done.stdout + done.stderr) == []
        assert CANARY_KEY[:10] not in done.stderr and CANARY_KEY[-10:] not in done.stderr


# A command that crashes with the key in its message and in its frame's locals, some of them
# longer than a traceback renderer would print whole.
CRASH = """
import sys
from agent import cli
from agent.commands import inspect as commands

def crash(args, settings):
    api_key = settings.api_key
    padded = "." * 45 + api_key + "." * 30
    cut = "-" * 20 + api_key
    header = {"Authorization": api_key, "note": "x" * 25 + api_key}
    raise RuntimeError("request failed with " + api_key)

commands.sysinfo = crash
sys.exit(cli.main(["sysinfo"]))
"""


@pytest.mark.parametrize("fmt", FORMATS)
def test_unexpected_exception_traceback(env: dict[str, str], tmp_path: Path, fmt: str) -> None:
    """A crash (COMET_AGENT_DEBUG unset): a traceback without locals, the message masked.

    With rich installed (comet_ml brings it), structlog's console renderer would print
    every frame's locals cut to width, a key among them cut past what redaction knows.
    """
    env = _shell_env(env, tmp_path, fmt)
    env.pop("COMET_AGENT_DEBUG", None)
    done = run_agent_script(CRASH, env, tmp_path)
    assert leaks_in(done.stdout + done.stderr) == []
    assert done.returncode == 1
    assert "Traceback" in done.stderr or '"exc_type": "RuntimeError"' in done.stderr
    assert "request failed with ***" in done.stderr
    assert "comet-agent: unexpected error: RuntimeError('request failed with ***')" in done.stderr
    assert "....." not in done.stderr  # no frame's locals rendered


def run_agent_script(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet that drives the agent's CLI in-process."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
