"""One frozen Settings, merged from every source the agent honours, each value validated.

Precedence, lowest first (wire §5 for the SDK's part):

1. built-in defaults (the ``OPTIONS`` table below);
2. TOML: ``/etc/comet-agent/config.toml`` then ``~/.config/comet-agent/config.toml``, or
   only the file named by ``--config`` / ``$COMET_AGENT_CONFIG``;
3. the Comet SDK's INI file: ``~/.comet.config``, then ``./.comet.config``, then
   ``$COMET_CONFIG`` (a file, or a directory holding ``.comet.config``);
4. environment: the SDK's ``COMET_*`` names, and ``COMET_AGENT_*`` for agent-only keys;
5. command-line flags.

The API key comes from (lowest first) the TOML ``api_key_file``, the INI
``api_key``, the systemd credential ``comet-api-key`` in
``$CREDENTIALS_DIRECTORY``, ``$COMET_AGENT_API_KEY_FILE``, ``$COMET_API_KEY``,
and ``--api-key-file``. The TOML file cannot hold the key itself, and there is
no ``--api-key`` flag: argv is visible to every user in ``ps``.

``python -m agent.config`` prints config.example.toml.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from agent import dirs
from agent.errors import ConfigError

DEFAULT_URL = "https://www.comet.com/clientlib/"
CREDENTIAL_NAME = "comet-api-key"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One setting: where it lives in each source, its type, default, bounds and meaning."""

    section: str
    key: str
    type: type
    default: object
    help: str
    sdk: str | None = None  # the SDK's dotted name: gives the COMET_* variable and INI place
    env: str | None = None  # agent-only variable, when not derived from `sdk`
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    shown_default: str | None = None  # for defaults that depend on the machine
    attr: str = ""  # the Settings attribute, when the bare key would be ambiguous

    @property
    def field(self) -> str:
        """The Settings attribute that holds this option."""
        return self.attr or self.key

    @property
    def env_name(self) -> str:
        """The environment variable that sets this option."""
        if self.env:
            return self.env
        if self.sdk:
            return self.sdk.upper().replace(".", "_")
        return f"COMET_AGENT_{self.field.upper()}"

    @property
    def ini_place(self) -> tuple[str, str] | None:
        """The (section, key) of this option in the SDK's INI file, if it has one."""
        if not self.sdk:
            return None
        *path, last = self.sdk.split(".")
        return "_".join(path), last

    @property
    def name(self) -> str:
        """``[section] key``, the way error messages name it."""
        return f"[{self.section}] {self.key}"


# fmt: off
OPTIONS: tuple[Option, ...] = (
    # [comet]: which server, which experiment
    Option("comet", "api_key_file", Path, None,
           "file holding the Comet API key (the key itself never goes in this file)"),
    Option("comet", "url_override", str, DEFAULT_URL,
           "Comet server, as the SDK's COMET_URL_OVERRIDE", sdk="comet.url_override"),
    Option("comet", "workspace", str, None, "workspace for a new experiment",
           sdk="comet.workspace"),
    Option("comet", "project_name", str, None, "project for a new experiment",
           sdk="comet.project_name"),
    Option("comet", "experiment_key", str, None,
           "attach to this experiment instead of creating one", env="COMET_EXPERIMENT_KEY"),
    Option("comet", "experiment_name", str, None, "name of a new experiment",
           env="COMET_EXPERIMENT_NAME"),
    Option("comet", "offline", bool, False,
           "write an offline archive instead of sending (also the case with no API key)",
           sdk="comet.offline"),
    Option("comet", "offline_directory", Path, None, "where offline archives go",
           sdk="comet.offline_directory", shown_default="~/.local/share/comet-agent"),
    Option("comet", "local_copy", bool, False,
           "online: also keep an archive of what is sent in <offline_directory>/online/ "
           "(for comet-agent report)"),
    # [agent]: the process itself
    Option("agent", "state_directory", Path, None,
           "outbox and state; systemd's $STATE_DIRECTORY when set",
           shown_default="~/.local/state/comet-agent"),
    Option("agent", "stop_timeout_s", float, 10.0,
           "on stop, how long to keep sending what is queued", minimum=0, maximum=3600),
    Option("agent", "adopt_interval_s", float, 60.0,
           "start: how often to take in and send the outbox of a `run` killed beside it "
           "(<state>/runs/<pid>)", minimum=1, maximum=3600),
    Option("agent", "key_file_timeout_s", float, 300.0,
           "sidecar: how long to wait for --experiment-key-file to appear", minimum=0,
           maximum=86400),
    Option("agent", "quiet_sdk", bool, True,
           "run: tell a comet_ml SDK in the command (through its own COMET_AUTO_LOG_* switches, "
           "never one you set) to leave output, system details and metrics, and git to the "
           "agent; false leaves the SDK alone (--leave-sdk-alone)"),
    Option("agent", "role", str, "auto",
           "multi-node: who sends experiment-level facts (auto: global rank 0)",
           choices=("auto", "leader", "follower")),
    # [sampling]: what to sample and how often
    Option("sampling", "cpu_interval_s", float, 30.0,
           "CPU, RAM, load, disk and network sampling interval before the server sets one",
           sdk="comet.system_cpu_interval", minimum=1, maximum=3600),
    Option("sampling", "gpu_interval_s", float, 30.0,
           "GPU sampling interval before the server sets one", sdk="comet.system_gpu_interval",
           minimum=1, maximum=3600),
    Option("sampling", "min_interval_s", float, 1.0,
           "lowest sampling or keep-alive interval accepted from the server", minimum=0.1,
           maximum=3600),
    Option("sampling", "max_interval_s", float, 600.0,
           "highest sampling or keep-alive interval accepted from the server", minimum=1,
           maximum=86400),
    Option("sampling", "follow_server", bool, True,
           "apply the intervals in the server's keep-alive answers"),
    Option("sampling", "cpu", bool, True, "sample CPU, RAM and load", env="COMET_AGENT_SAMPLE_CPU",
           attr="sample_cpu"),
    Option("sampling", "gpu", bool, True, "sample NVIDIA GPUs", env="COMET_AGENT_SAMPLE_GPU",
           attr="sample_gpu"),
    Option("sampling", "disk", bool, True, "sample disk usage and IO",
           env="COMET_AGENT_SAMPLE_DISK", attr="sample_disk"),
    Option("sampling", "network", bool, True, "sample network IO",
           env="COMET_AGENT_SAMPLE_NETWORK", attr="sample_network"),
    Option("sampling", "per_core", bool, False, "also send sys.cpu.percent.NN per core",
           env="COMET_AGENT_SAMPLE_PER_CORE"),
    Option("sampling", "process", bool, True, "sample the watched process tree",
           attr="sample_process"),
    Option("sampling", "disk_path", Path, Path("/"), "file system whose usage is reported"),
    Option("sampling", "host_root", Path, None,
           "the host's / mounted here (a DaemonSet's hostPath): sample the node's /proc, /sys "
           "and disk, as node_exporter's --path.rootfs", shown_default="unset: this machine"),
    Option("sampling", "cloud_probe", bool, False,
           "ask the cloud metadata service for the instance type (1 s budget)"),
    Option("sampling", "nvml_timeout_s", float, 2.0,
           "longest one NVML call may take before the GPU is skipped", minimum=0.05, maximum=60),
    # [send]: what goes on the wire
    Option("send", "sys_metrics", bool, True,
           "send sys.* metrics through the metric batch endpoint, as the SDK does"),
    Option("send", "typed_endpoints", bool, True,
           "also send the cpu-, ram-, load- and gpu-metrics endpoints"),
    Option("send", "system_details", bool, True, "send Set System Details once",
           env="COMET_AGENT_SYSTEM_DETAILS"),
    Option("send", "compress", bool, True, "gzip the batch calls",
           sdk="comet.message_batch.use_compression"),
    Option("send", "node_identifier", str, None, "prefix for every sys.* metric name",
           sdk="comet.distributed_node_identifier"),
    # [git]
    Option("git", "metadata", bool, True, "send git metadata",
           env="COMET_AGENT_GIT_METADATA", attr="git_metadata"),
    Option("git", "patch", bool, True, "send the uncommitted diff as a patch",
           env="COMET_AGENT_GIT_PATCH", attr="git_patch"),
    Option("git", "directory", Path, None, "repository to describe", sdk="comet.git_directory",
           shown_default="the working directory", attr="git_directory"),
    Option("git", "patch_max_bytes", int, 10_000_000, "larger patches are skipped", minimum=0,
           maximum=1_000_000_000),
    Option("git", "timeout_s", float, 5.0, "longest one git command may take", minimum=0.1,
           maximum=300, attr="git_timeout_s"),
    # [outbox]
    Option("outbox", "max_bytes", int, 256 * 1024 * 1024,
           "outbox size cap; past it the oldest samples go first, never static facts",
           minimum=1024 * 1024, maximum=1 << 40, attr="outbox_max_bytes"),
    Option("outbox", "backoff_max_s", float, 60.0, "longest wait between two retries",
           minimum=1, maximum=3600),
    Option("outbox", "batch_items", int, 1000, "most metric items in one batch request",
           minimum=1, maximum=10_000),
    Option("outbox", "linger_s", float, 2.0,
           "after a pass, let samples gather this long so their metric batches share a "
           "request (timestamps unchanged; 0 sends each at once)",
           minimum=0, maximum=60),
    # [http]
    Option("http", "timeout_s", float, 10.0, "read timeout of one request",
           sdk="comet.timeout.http", minimum=0.1, maximum=600, attr="http_timeout_s"),
    Option("http", "connect_timeout_s", float, 5.0, "connect timeout of one request",
           minimum=0.1, maximum=600),
    Option("http", "verify_tls", bool, True, "check the server's TLS certificate",
           sdk="comet.internal.check_tls_certificate"),
    Option("http", "ca_bundle", Path, None, "extra CA bundle for a re-signing proxy",
           sdk="comet.include_custom_ca_bundle"),
    Option("http", "allow_header_name", str, None, "extra header for a proxy allow-list",
           sdk="comet.allow_header.name"),
    Option("http", "allow_header_value", str, None, "its value",
           sdk="comet.allow_header.value"),
    # [output]: the run wrapper's Log Output
    Option("output", "capture", bool, True, "send the wrapped command's output to Log Output",
           attr="capture_output"),
    Option("output", "max_line_bytes", int, 1_000_000,
           "longer lines are cut, with a marker, and counted", minimum=80, maximum=5_000_000),
    Option("output", "batch_lines", int, 500, "most lines in one Log Output request",
           minimum=1, maximum=10_000),
    Option("output", "flush_interval_s", float, 2.0, "how often captured output is queued",
           minimum=0.05, maximum=60),
    # [log]
    Option("log", "level", str, "info", "log level",
           choices=("debug", "info", "warning", "error"), attr="log_level"),
    Option("log", "format", str, "auto", "auto: console on a terminal, JSON elsewhere",
           choices=("auto", "console", "json"), attr="log_format"),
)
# fmt: on

_BY_FIELD: dict[str, Option] = {}
for _opt in OPTIONS:
    if _opt.field in _BY_FIELD:
        raise RuntimeError(f"option attribute {_opt.field!r} is used twice")
    _BY_FIELD[_opt.field] = _opt
_SECTIONS = {opt.section for opt in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Every setting, validated. Attribute names are the option keys."""

    api_key: str = field(default="", repr=False)
    api_key_source: str = "none"
    url_override: str = DEFAULT_URL
    workspace: str | None = None
    project_name: str | None = None
    experiment_key: str | None = None
    experiment_name: str | None = None
    offline: bool = False
    offline_directory: Path = Path()
    local_copy: bool = False
    api_key_file: Path | None = None
    state_directory: Path = Path()
    stop_timeout_s: float = 10.0
    adopt_interval_s: float = 60.0
    key_file_timeout_s: float = 300.0
    quiet_sdk: bool = True
    role: str = "auto"
    cpu_interval_s: float = 30.0
    gpu_interval_s: float = 30.0
    min_interval_s: float = 1.0
    max_interval_s: float = 600.0
    follow_server: bool = True
    sample_cpu: bool = True
    sample_gpu: bool = True
    sample_disk: bool = True
    sample_network: bool = True
    per_core: bool = False
    sample_process: bool = True
    disk_path: Path = Path("/")
    host_root: Path | None = None
    cloud_probe: bool = False
    nvml_timeout_s: float = 2.0
    sys_metrics: bool = True
    typed_endpoints: bool = True
    system_details: bool = True
    compress: bool = True
    node_identifier: str | None = None
    git_metadata: bool = True
    git_patch: bool = True
    git_directory: Path | None = None
    patch_max_bytes: int = 10_000_000
    git_timeout_s: float = 5.0
    outbox_max_bytes: int = 256 * 1024 * 1024
    backoff_max_s: float = 60.0
    batch_items: int = 1000
    linger_s: float = 2.0
    http_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    verify_tls: bool = True
    ca_bundle: Path | None = None
    allow_header_name: str | None = None
    allow_header_value: str | None = None
    capture_output: bool = True
    max_line_bytes: int = 1_000_000
    batch_lines: int = 500
    flush_interval_s: float = 2.0
    log_level: str = "info"
    log_format: str = "auto"
    # Not options: where values came from, for `status` and `doctor`.
    explicit: frozenset[str] = frozenset()
    files: tuple[str, ...] = ()

    @property
    def local_copy_directory(self) -> Path:
        """Where online agents keep their local copies (`upload` with no PATH never looks)."""
        return self.offline_directory / "online"

    @property
    def offline_reason(self) -> str | None:
        """Why the agent writes an archive instead of sending, or None when online."""
        if not self.offline:
            return None
        return "offline requested" if self.api_key else "no API key configured"


def option(field_name: str) -> Option:
    """Return the option held in the Settings attribute `field_name`."""
    return _BY_FIELD[field_name]


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class _Merge:
    values: dict[tuple[str, str], object] = field(default_factory=dict)
    explicit: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    key: str = ""
    key_source: str = "none"


def load_settings(
    *,
    flags: Mapping[str, object] | None = None,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    cwd: Path | None = None,
    system_config: Path = Path("/etc/comet-agent/config.toml"),
) -> Settings:
    """Merge every source into one Settings, or raise ConfigError naming the culprit.

    `flags` maps Settings attribute names to values already parsed by argparse;
    None values are ignored.
    """
    env = dict(os.environ if environ is None else environ)
    home = home if home is not None else Path(env.get("HOME") or Path.home())
    cwd = cwd if cwd is not None else Path.cwd()
    merge = _Merge()
    for opt in OPTIONS:
        merge.values[(opt.section, opt.key)] = opt.default

    explicit_toml = config_path or (
        Path(env["COMET_AGENT_CONFIG"]) if env.get("COMET_AGENT_CONFIG") else None
    )
    if explicit_toml is not None:
        named_by = "--config" if config_path else "COMET_AGENT_CONFIG"
        _merge_toml(merge, _expand(explicit_toml, named_by), required=True, named_by=named_by)
    else:
        _merge_toml(merge, system_config, required=False)
        user_dir = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        _merge_toml(merge, user_dir / "comet-agent" / "config.toml", required=False)

    for ini in _ini_paths(env, home, cwd):
        _merge_ini(merge, ini)

    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials:
        cred = Path(credentials) / CREDENTIAL_NAME
        if cred.exists():
            merge.key = _read_key_file(cred, f"systemd credential {CREDENTIAL_NAME}")
            merge.key_source = f"systemd credential {CREDENTIAL_NAME}"

    _merge_env(merge, env)
    _merge_flags(merge, flags or {})
    return _finish(merge, env, home)


def _merge_toml(merge: _Merge, path: Path, *, required: bool, named_by: str = "") -> None:
    shown = _shown(str(path))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"config file {shown} does not exist; create it or fix {named_by or '--config'}"
            ) from None
        return
    except OSError as exc:
        by = f" (from {named_by})" if named_by else ""
        fix = (
            "name the file itself" if isinstance(exc, IsADirectoryError) else "fix its permissions"
        )
        raise ConfigError(
            f"config file {shown}{by} cannot be read ({exc.strerror}); {fix}"
        ) from None
    import tomllib  # only when there is a file: `comet-agent run` starts faster without it

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {shown} is not valid TOML: {exc}") from None
    merge.files.append(str(path))
    for section, table in data.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"unknown section [{_shown(section)}] in {shown}{_hint(section, _SECTIONS)}; "
                "see config.example.toml"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{_shown(section)} in {shown} must be a [section] table")
        for key, value in table.items():
            opt = next((o for o in OPTIONS if o.section == section and o.key == key), None)
            if opt is None:
                if section == "comet" and key == "api_key":
                    raise ConfigError(
                        f"{shown} holds api_key: put the key in a file of its own "
                        "and set [comet] api_key_file, or use COMET_API_KEY"
                    )
                known = {o.key for o in OPTIONS if o.section == section}
                raise ConfigError(
                    f"unknown key [{section}] {_shown(key)} in {shown}{_hint(key, known)}; "
                    "see config.example.toml"
                )
            merge.values[(section, key)] = _coerce(opt, value, shown)
            merge.explicit.add(opt.field)


def _ini_paths(env: Mapping[str, str], home: Path, cwd: Path) -> list[Path]:
    paths = [home / ".comet.config", cwd / ".comet.config"]
    named = env.get("COMET_CONFIG") or env.get("COMET_INI")
    if named:
        target = _expand(Path(named), "COMET_CONFIG" if env.get("COMET_CONFIG") else "COMET_INI")
        try:
            is_dir = target.is_dir()
        except OSError:  # a name too long, a directory we may not search: _merge_ini says so
            is_dir = False
        paths.append(target / ".comet.config" if is_dir else target)
    return paths


def _merge_ini(merge: _Merge, path: Path) -> None:
    shown = _shown(str(path))
    try:
        if not path.is_file():
            return
    except OSError as exc:
        raise ConfigError(f"Comet config file {shown} cannot be read: {exc.strerror}") from None
    import configparser  # only when there is a file

    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise ConfigError(f"Comet config file {shown} cannot be read: {reason}") from None
    merge.files.append(str(path))
    if parser.has_option("comet", "api_key"):
        key = parser.get("comet", "api_key").strip()
        if key:
            merge.key = _check_key(key, f"api_key in {shown}")
            merge.key_source = str(path)
    for opt in OPTIONS:
        place = opt.ini_place
        if place and parser.has_option(*place):
            text = parser.get(*place)
            source = f"{shown} [{place[0]}] {place[1]}"
            merge.values[(opt.section, opt.key)] = _parse_text(opt, text, source)
            merge.explicit.add(opt.field)


def _merge_env(merge: _Merge, env: Mapping[str, str]) -> None:
    key_file = env.get("COMET_AGENT_API_KEY_FILE")
    if key_file:
        merge.key = _read_key_file(Path(key_file), "COMET_AGENT_API_KEY_FILE")
        merge.key_source = "COMET_AGENT_API_KEY_FILE"
    direct = env.get("COMET_API_KEY", "").strip()
    if direct:
        merge.key = _check_key(direct, "COMET_API_KEY")
        merge.key_source = "COMET_API_KEY"
    for opt in OPTIONS:
        if opt.key == "api_key_file":
            continue  # read above, as key material
        text = env.get(opt.env_name)
        if text is not None and text != "":
            merge.values[(opt.section, opt.key)] = _parse_text(
                opt, text, f"environment {opt.env_name}"
            )
            merge.explicit.add(opt.field)


def _merge_flags(merge: _Merge, flags: Mapping[str, object]) -> None:
    for name, value in flags.items():
        if value is None:
            continue
        opt = option(name)
        source = f"--{name.replace('_', '-')}"
        if opt.key == "api_key_file":
            path = _expand(Path(str(value)), source)
            merge.key = _read_key_file(path, source)
            merge.key_source = source
        merge.values[(opt.section, opt.key)] = _coerce(opt, value, source)
        merge.explicit.add(opt.field)


def _finish(merge: _Merge, env: Mapping[str, str], home: Path) -> Settings:
    values = merge.values
    toml_key_file = values[("comet", "api_key_file")]
    if not merge.key and isinstance(toml_key_file, Path):
        merge.key = _read_key_file(toml_key_file, "[comet] api_key_file")
        merge.key_source = str(toml_key_file)

    lo = cast(float, values[("sampling", "min_interval_s")])  # coerced above
    hi = cast(float, values[("sampling", "max_interval_s")])
    if lo > hi:
        raise ConfigError(
            f"[sampling] min_interval_s ({lo:g}) is above max_interval_s ({hi:g}); "
            "lower the first or raise the second"
        )
    if (values[("http", "allow_header_name")] is None) != (
        values[("http", "allow_header_value")] is None
    ):
        raise ConfigError(
            "[http] allow_header_name and allow_header_value go together; set both "
            "(COMET_ALLOW_HEADER_NAME, COMET_ALLOW_HEADER_VALUE) or neither"
        )

    url = cast(str, values[("comet", "url_override")])
    if "url_override" not in merge.explicit and merge.key:
        url = _url_from_key(merge.key) or url
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"[comet] url_override {url!r} is not an http(s) URL; set it like {DEFAULT_URL}"
        )
    values[("comet", "url_override")] = url if url.endswith("/") else url + "/"

    state_dir = values[("agent", "state_directory")]
    systemd_state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state_dir is None:
        xdg_state = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state")
        values[("agent", "state_directory")] = (
            Path(systemd_state) if systemd_state else xdg_state / "comet-agent"
        )
    if values[("comet", "offline_directory")] is None:
        if systemd_state:
            # Under systemd the home is read-only (ProtectHome, ProtectSystem=strict): offline
            # archives go where the unit may write.
            values[("comet", "offline_directory")] = Path(systemd_state) / "offline"
        else:
            xdg_data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
            values[("comet", "offline_directory")] = xdg_data / "comet-agent"
    for where in (("agent", "state_directory"), ("comet", "offline_directory")):
        values[where] = dirs.effective(cast(Path, values[where]))

    kwargs: dict[str, object] = {opt.field: values[(opt.section, opt.key)] for opt in OPTIONS}
    kwargs["offline"] = bool(kwargs["offline"]) or not merge.key
    return Settings(
        api_key=merge.key,
        api_key_source=merge.key_source,
        explicit=frozenset(merge.explicit),
        files=tuple(merge.files),
        **kwargs,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------
# Values


def _parse_text(opt: Option, text: str, source: str) -> object:
    """Parse a string from the environment or the INI file into the option's type."""
    text = text.strip()
    if opt.type is bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{opt.name} must be true or false, got {text!r} ({source})")
    if opt.type is int:
        try:
            return _coerce(opt, int(text.replace("_", "")), source)
        except ValueError:
            raise ConfigError(
                f"{opt.name} must be a whole number, got {text!r} ({source})"
            ) from None
    if opt.type is float:
        try:
            return _coerce(opt, float(text), source)
        except ValueError:
            raise ConfigError(f"{opt.name} must be a number, got {text!r} ({source})") from None
    return _coerce(opt, text, source)


def _coerce(opt: Option, value: object, source: str) -> object:
    """Check a typed value against the option's type and bounds; return it normalised."""
    if opt.type is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{opt.name} must be true or false, got {value!r} ({source})")
        return value
    if opt.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a whole number" if opt.type is int else "a number"
            raise ConfigError(f"{opt.name} must be {kind}, got {value!r} ({source})")
        if opt.type is int and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{opt.name} must be a whole number, got {value!r} ({source})")
            value = int(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{opt.name} must be a finite number, got {value!r} ({source})")
        # Bounds before the conversion: float() of a 400-digit TOML integer overflows.
        if (opt.minimum is not None and value < opt.minimum) or (
            opt.maximum is not None and value > opt.maximum
        ):
            raise ConfigError(
                f"{opt.name} must be between {opt.minimum:g} and {opt.maximum:g}, "
                f"got {value!r} ({source})"
            )
        try:
            return opt.type(value)
        except OverflowError:  # an unbounded float option given a huge integer
            raise ConfigError(f"{opt.name} is too large, got {value!r} ({source})") from None
    if value == "" and opt.default is None:
        return None  # an empty value unsets an optional key, as `key = ""` in the example file
    if opt.type is Path:
        if not isinstance(value, str | Path) or not str(value) or "\0" in str(value):
            raise ConfigError(f"{opt.name} must be a path, got {value!r} ({source})")
        return _expand(Path(value), f"{opt.name} ({source})")
    if not isinstance(value, str):
        raise ConfigError(f"{opt.name} must be a string, got {value!r} ({source})")
    if opt.choices and value.lower() not in opt.choices:
        raise ConfigError(
            f"{opt.name} must be one of {', '.join(opt.choices)}, got {value!r} ({source})"
        )
    return value.lower() if opt.choices else value


def _expand(path: Path, source: str) -> Path:
    """Return `path` with ``~`` expanded; ConfigError for ``~name`` of an unknown user."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ConfigError(
            f"cannot expand the ~ in {str(path)!r} ({source}); write the full path"
        ) from None


def _read_key_file(path: Path, source: str) -> str:
    shown = _shown(str(path))
    try:
        text = _expand(path, source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"API key file {shown} ({source}) does not exist; create it or fix the path"
        ) from None
    except PermissionError as exc:
        uid, gids = os.geteuid(), sorted({os.getegid(), *os.getgroups()})
        raise ConfigError(
            f"API key file {shown} ({source}) cannot be read: {exc.strerror}; make it readable "
            f"by uid {uid} or one of its groups {gids} (Kubernetes: securityContext.fsGroup "
            "with the secret's defaultMode 0440; systemd: LoadCredential=)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"API key file {shown} ({source}) cannot be read: {reason}") from None
    key = text.strip()
    if not key:
        raise ConfigError(f"API key file {shown} ({source}) is empty; write the key into it")
    return _check_key(key, f"API key file {shown}")


def _check_key(key: str, source: str) -> str:
    # Never echo the key: the message names where it came from and what is wrong with it.
    if any(ch.isspace() for ch in key) or not key.isprintable() or not key.isascii():
        raise ConfigError(
            f"the API key from {source} contains spaces, line breaks or "
            "non-ASCII characters; it must be the key alone, on one line"
        )
    return key


def _url_from_key(key: str) -> str | None:
    """Return the server that an API key of the form ``<key>*<base64 JSON>`` names (wire §1.1)."""
    _, star, tail = key.partition("*")
    if not star or not tail:
        return None
    import base64

    try:
        data = json.loads(base64.b64decode(tail + "=" * (-len(tail) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    base = data.get("baseUrl") if isinstance(data, dict) else None
    if not isinstance(base, str) or not base.startswith(("http://", "https://")):
        return None
    return base.rstrip("/") + "/clientlib/"


def _shown(name: str) -> str:
    """`name` as written, or quoted with escapes when it holds line breaks or other controls."""
    return name if name.isprintable() else repr(name)


def _hint(word: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# config.example.toml


def render_example() -> str:
    """Return the text of config.example.toml: every option, commented out, at its default."""
    lines = [
        "# comet-agent configuration: every key, at its default.",
        "# Copy to /etc/comet-agent/config.toml or ~/.config/comet-agent/config.toml and",
        "# uncomment what you change. Environment variables (shown per key) and flags win over",
        "# this file. The API key never goes here: see [comet] api_key_file.",
        "# Regenerate with: python -m agent.config > config.example.toml",
    ]
    section = ""
    for opt in OPTIONS:
        if opt.section != section:
            section = opt.section
            lines += ["", f"[{section}]"]
        bounds = ""
        if opt.minimum is not None:
            bounds = f" [{opt.minimum:g} .. {opt.maximum:g}]"
        if opt.choices:
            bounds = f" ({' | '.join(opt.choices)})"
        lines.append(f"# {opt.help}{bounds}; env {opt.env_name}")
        lines.append(f"# {opt.key} = {_toml_value(opt)}")
    return "\n".join(lines) + "\n"


def _toml_value(opt: Option) -> str:
    if opt.shown_default is not None:
        return json.dumps(opt.shown_default)
    value = opt.default
    if value is None:
        return '""  # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:_}" if isinstance(value, int) and value >= 10_000 else repr(value)
    return json.dumps(str(value))


def as_dict(settings: Settings) -> dict[str, object]:
    """Return the settings as plain data for display, the API key reduced to its source."""
    out: dict[str, object] = {}
    for opt in OPTIONS:
        value = getattr(settings, opt.field)
        out[f"{opt.section}.{opt.key}"] = str(value) if isinstance(value, Path) else value
    out["comet.api_key"] = f"set ({settings.api_key_source})" if settings.api_key else "not set"
    return out


def replace(settings: Settings, **changes: object) -> Settings:
    """Return a copy of `settings` with some fields changed."""
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


if __name__ == "__main__":
    print(render_example(), end="")  # noqa: T201 - this is the generator's output
