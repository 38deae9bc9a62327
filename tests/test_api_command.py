"""``comet-agent api``: every endpoint reachable from a shell, every failure one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.api.endpoints import ENDPOINTS, Payload
from agent.cli import main
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, run_agent

KEY = "0123456789abcdef0123456789abcdef"


def _patch_zip(tmp_path: Path) -> Path:
    import zipfile

    path = tmp_path / "patch.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("git_diff.patch", "diff --git a/x b/x\n+hello\n")
    return path


@pytest.fixture(name="api_env")
def _api_env(monkeypatch: pytest.MonkeyPatch, server: CometStandIn, home: Path) -> None:
    """In-process environment for main(): the stand-in, the canary key, an empty home."""
    for name in (
        "COMET_EXPERIMENT_KEY",
        "COMET_CONFIG",
        "COMET_AGENT_CONFIG",
        "CREDENTIALS_DIRECTORY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("COMET_API_KEY", CANARY_KEY)
    monkeypatch.setenv("COMET_URL_OVERRIDE", server.url)
    monkeypatch.chdir(home)


def test_list_names_every_endpoint_with_method_and_path(capsys: pytest.CaptureFixture[str]) -> None:
    """``api --list`` prints one line per endpoint: name, method and the wire notes' path."""
    assert main(["api", "--list"]) == 0
    out = capsys.readouterr().out
    for ep in ENDPOINTS.values():
        line = next(line for line in out.splitlines() if line.split()[:1] == [ep.name])
        assert ep.method in line.split()
        assert ep.display_path in line


@pytest.mark.usefixtures("api_env")
@pytest.mark.parametrize("name", [e.name for e in ENDPOINTS.values() if e.known])
def test_each_endpoint_called_with_its_example(
    name: str, server: CometStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each endpoint with a known path, sent its seed example, passes the stand-in's check."""
    ep = ENDPOINTS[name]
    args = ["api", name, "--body", json.dumps(dict(ep.example)), "--experiment-key", KEY]
    if ep.payload is Payload.MULTIPART:
        args += ["--file", str(_patch_zip(tmp_path))]
    assert main(args) == 0, capsys.readouterr().err
    assert server.count(name) == 1
    assert json.loads(capsys.readouterr().out) is not None
    assert CANARY_KEY not in server.all_text()


@pytest.mark.usefixtures("api_env")
@pytest.mark.parametrize("name", [e.name for e in ENDPOINTS.values() if not e.known])
def test_unknown_path_is_a_usage_error_unless_given(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An endpoint whose path the wire notes leave unknown says so, exit 2, and sends nothing."""
    ep = ENDPOINTS[name]
    args = ["api", name, "--body", json.dumps(dict(ep.example)), "--experiment-key", KEY]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no known path" in err and "--path" in err


@pytest.mark.usefixtures("api_env")
def test_fields_as_name_value_are_typed(server: CometStandIn) -> None:
    """FIELD=VALUE pairs are converted to the field's JSON type before sending."""
    assert (
        main(
            [
                "api",
                "log-metric",
                "metricName=loss",
                "metricValue=0.25",
                "step=3",
                "--experiment-key",
                KEY,
            ]
        )
        == 0
    )
    body = server.received("log-metric")[0].body
    assert body == {"metricName": "loss", "metricValue": 0.25, "step": 3, "experimentKey": KEY}


@pytest.mark.usefixtures("api_env")
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["api", "no-such-endpoint"], "unknown endpoint"),
        (["api", "log-metric", "--body", "{not json", "--experiment-key", KEY], "not JSON"),
        (["api", "log-metric", "--body", "[1]", "--experiment-key", KEY], "JSON object"),
        (["api", "log-metric", "metricName=x", "--experiment-key", KEY], "needs metricValue"),
        (
            [
                "api",
                "log-metric",
                "metricName=x",
                "metricValue=1",
                "bogus=2",
                "--experiment-key",
                KEY,
            ],
            "no field 'bogus'",
        ),
        (
            ["api", "add-ram-metrics", "totalRam=lots", "usedRam=1", "--experiment-key", KEY],
            "totalRam must be a whole number, got 'lots'",
        ),
        (
            ["api", "log-metric", "metricName=x", "metricValue=abc", "--experiment-key", KEY],
            "metricValue must be a number, got 'abc'",
        ),
        (["api", "log-metric", "metricName=x", "metricValue=1"], "needs an experiment key"),
        (["api", "upload-git-patch", "--experiment-key", KEY], "--file"),
        (["api"], "name an endpoint"),
        (["api", "--bogus-flag"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], needle: str, server: CometStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad usage is refused before anything is sent: one line naming the culprit, exit 2."""
    with pytest.raises(SystemExit) if "--bogus-flag" in args else _nothing() as caught:
        code = main(args)
    if caught is not None:
        code = caught.value.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert server.count(ok_only=False) == 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ({"status": 401}, "HTTP 401"),
        ({"status": 403}, "HTTP 403"),
        ({"status": 429, "headers": {"Retry-After": "2"}}, "HTTP 429"),
        ({"status": 503}, "HTTP 503"),
        (
            {"status": 400, "body": {"msg": "No such experiment", "sdk_error_code": 90211}},
            "No such experiment",
        ),
        ({"mode": "html"}, "not Comet's JSON"),
        ({"mode": "garbage-json"}, "not Comet's JSON"),
        ({"mode": "drop"}, "cannot reach"),
        ({"mode": "cut"}, "cannot reach"),
    ],
)
def test_server_failures_are_one_line_exit_1(
    fault: dict[str, object], needle: str, server: CometStandIn, env: dict[str, str]
) -> None:
    """A failing answer gives one line naming the status or the cause, exit 1, never the key."""
    server.fail("log-metric", **fault)  # type: ignore[arg-type]
    result = run_agent(
        ["api", "log-metric", "metricName=x", "metricValue=1", "--experiment-key", KEY], env
    )
    assert result.returncode == 1, result.stderr
    assert needle in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert CANARY_KEY not in result.stderr + result.stdout


def test_wrong_key_is_an_auth_error(server: CometStandIn, env: dict[str, str]) -> None:
    """The stand-in's real 401 for a wrong key names the fix, and echoes neither key."""
    env = {**env, "COMET_API_KEY": "WRONGkeyWRONGkeyWRONGkey00"}
    result = run_agent(["api", "keep-alive", "--experiment-key", KEY], env)
    assert result.returncode == 1
    assert "rejected the API key (HTTP 401: Invalid api key)" in result.stderr
    assert "COMET_API_KEY" in result.stderr
    assert "WRONGkey" not in result.stderr


def test_slow_server_times_out(server: CometStandIn, env: dict[str, str]) -> None:
    """A server that does not answer within the read timeout is a transport error, exit 1."""
    server.fail("keep-alive", mode="slow", delay_s=3)
    env = {**env, "COMET_TIMEOUT_HTTP": "0.5"}
    result = run_agent(["api", "keep-alive", "--experiment-key", KEY], env)
    assert result.returncode == 1
    assert "no answer from 127.0.0.1" in result.stderr and "0.5 s" in result.stderr


def test_dry_run_masks_the_key_and_sends_nothing(server: CometStandIn, env: dict[str, str]) -> None:
    """--dry-run prints the request with the API key masked, and sends nothing."""
    result = run_agent(
        [
            "api",
            "add-run",
            "local_timestamp=1700000000000",
            "offline=false",
            "projectName=p",
            "teamName=ws",
            "libVersion=1",
            "--experiment-key",
            KEY,
            "--dry-run",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["headers"]["Authorization"] == "***"
    assert shown["json"]["apiKey"] == "***"
    assert shown["json"]["experimentKey"] == KEY
    assert CANARY_KEY not in result.stdout + result.stderr
    assert server.count(ok_only=False) == 0


def test_no_key_is_a_usage_error(server: CometStandIn, offline_env: dict[str, str]) -> None:
    """Without an API key a real call is refused with the ways to set one."""
    env = {**offline_env, "COMET_URL_OVERRIDE": server.url}
    result = run_agent(["api", "keep-alive", "--experiment-key", KEY], env)
    assert result.returncode == 2
    assert "no API key" in result.stderr
    assert server.count(ok_only=False) == 0


def test_options_may_come_before_the_fields(server: CometStandIn, env: dict[str, str]) -> None:
    """`api NAME --experiment-key K f=v`: the fields after an option are fields, not an error."""
    result = run_agent(
        [
            *("api", "add-run", "--experiment-key", KEY, "local_timestamp=1700000000000"),
            *("offline=false", "--dry-run", "projectName=p", "teamName=ws", "libVersion=1"),
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["json"]["projectName"] == "p" and shown["json"]["libVersion"] == "1"
    assert shown["json"]["local_timestamp"] == 1700000000000
    assert server.count(ok_only=False) == 0
    stray = run_agent(["api", "add-run", "--experiment-key", KEY, "--bogus"], env)
    assert stray.returncode == 2 and "unrecognized arguments: --bogus" in stray.stderr
