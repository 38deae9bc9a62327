"""Configuration: every source in its place, every bad value one line and exit 2."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from agent.config import DEFAULT_URL, OPTIONS, load_settings, render_example
from agent.errors import ConfigError
from tests.helpers import CANARY_KEY, ROOT, clean_env, run_agent


def _load(tmp_path: Path, env: dict[str, str] | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return load_settings(
        environ=env or {}, home=home, cwd=tmp_path, system_config=tmp_path / "etc.toml", **kwargs
    )  # type: ignore[arg-type]


def test_defaults_without_any_source_are_offline(tmp_path: Path) -> None:
    """Nothing configured: SDK defaults, offline because there is no key, XDG directories."""
    s = _load(tmp_path)
    assert s.url_override == DEFAULT_URL
    assert s.cpu_interval_s == 30.0 and s.gpu_interval_s == 30.0
    assert s.offline and s.offline_reason == "no API key configured"
    assert s.state_directory == tmp_path / "home" / ".local" / "state" / "comet-agent"
    assert s.offline_directory == tmp_path / "home" / ".local" / "share" / "comet-agent"
    assert s.explicit == frozenset()


def test_precedence_toml_ini_env_flags(tmp_path: Path) -> None:
    """TOML < ~/.comet.config < COMET_* environment < flags, key by key."""
    (tmp_path / "etc.toml").write_text(
        '[comet]\nworkspace = "toml-ws"\nproject_name = "toml-p"\n'
        "[sampling]\ncpu_interval_s = 11\ngpu_interval_s = 12\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / ".comet.config").write_text(
        f"[comet]\nproject_name = ini-p\nsystem_cpu_interval = 13\napi_key = {CANARY_KEY}\n"
    )
    env = {"COMET_SYSTEM_CPU_INTERVAL": "14", "COMET_WORKSPACE": "env-ws"}
    s = _load(tmp_path, env, flags={"workspace": "flag-ws"})
    assert s.workspace == "flag-ws"
    assert s.project_name == "ini-p"
    assert s.cpu_interval_s == 14.0
    assert s.gpu_interval_s == 12.0
    assert s.api_key == CANARY_KEY and s.api_key_source.endswith(".comet.config")
    assert not s.offline
    assert {"workspace", "project_name", "cpu_interval_s", "gpu_interval_s"} <= s.explicit


def test_user_toml_overrides_system_toml(tmp_path: Path) -> None:
    """~/.config/comet-agent/config.toml wins over /etc/comet-agent/config.toml."""
    (tmp_path / "etc.toml").write_text('[log]\nlevel = "debug"\nformat = "json"\n')
    user = tmp_path / "home" / ".config" / "comet-agent"
    user.mkdir(parents=True)
    (user / "config.toml").write_text('[log]\nlevel = "warning"\n')
    s = _load(tmp_path)
    assert (s.log_level, s.log_format) == ("warning", "json")


def test_explicit_config_replaces_the_default_files(tmp_path: Path) -> None:
    """--config (or $COMET_AGENT_CONFIG) is read alone."""
    (tmp_path / "etc.toml").write_text('[log]\nlevel = "debug"\n')
    mine = tmp_path / "mine.toml"
    mine.write_text("[agent]\nstop_timeout_s = 3\n")
    s = _load(tmp_path, {"COMET_AGENT_CONFIG": str(mine)})
    assert s.stop_timeout_s == 3.0 and s.log_level == "info"


def test_key_sources_in_order(tmp_path: Path) -> None:
    """Key file < INI < systemd credential < COMET_AGENT_API_KEY_FILE < COMET_API_KEY < flag."""
    files = {}
    for name in ("toml", "cred", "envfile", "flag"):
        files[name] = tmp_path / f"{name}.key"
        files[name].write_text(f"{name.upper()}KEY{'0' * 22}\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "comet-api-key").write_text("CREDKEY" + "0" * 22)
    (tmp_path / "etc.toml").write_text(f'[comet]\napi_key_file = "{files["toml"]}"\n')
    assert _load(tmp_path).api_key.startswith("TOMLKEY")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert _load(tmp_path, env).api_key_source == "systemd credential comet-api-key"
    env["COMET_AGENT_API_KEY_FILE"] = str(files["envfile"])
    assert _load(tmp_path, env).api_key.startswith("ENVFILEKEY")
    env["COMET_API_KEY"] = CANARY_KEY
    assert _load(tmp_path, env).api_key == CANARY_KEY
    s = _load(tmp_path, env, flags={"api_key_file": str(files["flag"])})
    assert s.api_key.startswith("FLAGKEY") and s.api_key_source == "--api-key-file"
    assert CANARY_KEY not in repr(s)


def test_key_with_server_suffix_sets_the_url(tmp_path: Path) -> None:
    """A key <key>*<base64 JSON> names its server when no override is set (wire §1.1)."""
    tail = base64.b64encode(json.dumps({"baseUrl": "https://comet.example.com"}).encode()).decode()
    s = _load(tmp_path, {"COMET_API_KEY": f"{CANARY_KEY}*{tail.rstrip('=')}"})
    assert s.url_override == "https://comet.example.com/clientlib/"
    s = _load(
        tmp_path,
        {
            "COMET_API_KEY": f"{CANARY_KEY}*{tail}",
            "COMET_URL_OVERRIDE": "http://127.0.0.1:9/clientlib",
        },
    )
    assert s.url_override == "http://127.0.0.1:9/clientlib/"


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        (
            "[sampling]\ncpu_interval_s = -5\n",
            "[sampling] cpu_interval_s must be between 1 and 3600, got -5",
        ),
        ("[sampling]\ncpu_interval_s = 'often'\n", "[sampling] cpu_interval_s must be a number"),
        ("[sampling]\ncpu_intervall_s = 5\n", "unknown key [sampling] cpu_intervall_s"),
        ("[sampling]\ncpu_intervall_s = 5\n", "did you mean cpu_interval_s?"),
        ("[smapling]\n", "unknown section [smapling]"),
        ("[log]\nlevel = 'loud'\n", "[log] level must be one of debug, info, warning, error"),
        ("[send]\ncompress = 'yes'\n", "[send] compress must be true or false"),
        ("[outbox]\nbatch_items = 2.5\n", "[outbox] batch_items must be a whole number"),
        ("[comet]\napi_key = 'abc'\n", "put the key in a file of its own"),
        ("[comet\n", "is not valid TOML"),
        (
            "[sampling]\nmin_interval_s = 100\nmax_interval_s = 10\n",
            "min_interval_s (100) is above",
        ),
        ("[http]\nallow_header_name = 'X-A'\n", "go together"),
        ("[comet]\nurl_override = 'ftp://x'\n", "is not an http(s) URL"),
        ("[comet]\napi_key_file = '/nonexistent/key'\n", "API key file /nonexistent/key"),
    ],
)
def test_bad_toml_names_key_and_file(tmp_path: Path, toml: str, needle: str) -> None:
    """Each bad value raises one line that names the key, the value or the file."""
    (tmp_path / "etc.toml").write_text(toml)
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"COMET_SYSTEM_CPU_INTERVAL": "abc"}, "environment COMET_SYSTEM_CPU_INTERVAL"),
        ({"COMET_AGENT_SAMPLE_GPU": "maybe"}, "must be true or false"),
        ({"COMET_OFFLINE": "2"}, "must be true or false"),
        ({"COMET_API_KEY": "two words"}, "contains spaces"),
        (
            {"COMET_AGENT_CONFIG": "/nonexistent.toml"},
            "config file /nonexistent.toml does not exist",
        ),
        ({"COMET_AGENT_STOP_TIMEOUT_S": "nan"}, "finite"),
    ],
)
def test_bad_environment_names_the_variable(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    """A bad environment value names its variable; a bad key is described, never echoed."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, env)
    assert needle in str(caught.value)
    assert "two words" not in str(caught.value)


def test_unreadable_and_empty_key_files(tmp_path: Path) -> None:
    """An empty or unreadable key file is named with what to do."""
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        _load(tmp_path, {"COMET_AGENT_API_KEY_FILE": str(empty)})
    directory = tmp_path / "dir.key"
    directory.mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        _load(tmp_path, {"COMET_AGENT_API_KEY_FILE": str(directory)})


def test_bad_ini_file_is_named(tmp_path: Path) -> None:
    """A broken ~/.comet.config names the file."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".comet.config").write_text("this is not ini\n")
    with pytest.raises(ConfigError, match=r"\.comet\.config cannot be read"):
        _load(tmp_path)


def test_example_file_is_in_sync() -> None:
    """config.example.toml documents every option at its default (python -m agent.config)."""
    assert (ROOT / "config.example.toml").read_text() == render_example()


def test_example_file_uncommented_loads(tmp_path: Path) -> None:
    """Every line of the example, uncommented, is a valid config equal to the defaults."""
    text = "\n".join(
        line[2:] if line.startswith("# ") and "=" in line and not line.startswith("# -") else line
        for line in render_example().splitlines()
        if not line.startswith("# ") or "=" in line
    )
    path = tmp_path / "full.toml"
    path.write_text(text.replace("# unset", ""))
    s = _load(tmp_path, {"COMET_AGENT_CONFIG": str(path), "COMET_API_KEY": CANARY_KEY})
    for opt in OPTIONS:
        if opt.shown_default is None:
            assert getattr(s, opt.field) == opt.default, opt.name


def test_cli_config_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    """From the command line, a config error is one line on stderr and exit 2."""
    env = clean_env(tmp_path, {"COMET_SYSTEM_CPU_INTERVAL": "-1"})
    result = run_agent(["api", "--list"], env)
    assert result.returncode == 2
    assert result.stderr.startswith("comet-agent: [sampling] cpu_interval_s must be between")
    assert result.stderr.count("\n") == 1
