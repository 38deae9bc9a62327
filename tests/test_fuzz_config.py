"""Fuzzing the configuration: random TOML, INI and environment values give Settings or one line.

The property everywhere: ``load_settings`` either returns Settings whose every
field has its option's type and lies within its bounds, or raises ConfigError
whose message is one line naming the file, the key or the variable. Any other
exception is a bug. (That the example file, uncommented, loads as the defaults
is tested in test_config.py.)
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.config import OPTIONS, Settings, load_settings
from agent.errors import ConfigError
from tests.fuzzing import fuzz

FUZZ = fuzz(60)
SECTIONS = sorted({o.section for o in OPTIONS})
KEYS = sorted({o.key for o in OPTIONS})
# Every option's variable, and the ones the loader reads besides (key, files named).
ENV_NAMES = sorted(
    {o.env_name for o in OPTIONS}
    | {
        "COMET_API_KEY",
        "COMET_AGENT_API_KEY_FILE",
        "COMET_CONFIG",
        "COMET_INI",
        "COMET_AGENT_CONFIG",
    }
)
OPTION_NAMES = [o.name for o in OPTIONS]


@contextmanager
def sandbox() -> Iterator[Path]:
    """A fresh directory per example (pytest's tmp_path is per test, not per example)."""
    with tempfile.TemporaryDirectory() as name:
        base = Path(name)
        (base / "home").mkdir()
        yield base


def load(base: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from `base` only: its etc.toml, its home, nothing of the developer's."""
    return load_settings(
        environ=dict(env or {}),
        home=base / "home",
        cwd=base,
        system_config=base / "etc.toml",
    )


def assert_valid(s: Settings) -> None:
    """Every field has its option's type and lies within its bounds."""
    for opt in OPTIONS:
        value = getattr(s, opt.field)
        if value is None:
            assert opt.default is None, opt.name
            continue
        if opt.type is bool:
            assert isinstance(value, bool), opt.name
        elif opt.type in (int, float):
            assert isinstance(value, opt.type) and not isinstance(value, bool), opt.name
            assert math.isfinite(value), opt.name
            assert opt.minimum is None or value >= opt.minimum, opt.name
            assert opt.maximum is None or value <= opt.maximum, opt.name
        elif opt.type is Path:
            assert isinstance(value, Path) and "\0" not in str(value), opt.name
        else:
            assert isinstance(value, str), opt.name
            if opt.choices:
                assert value in opt.choices, opt.name
    assert s.url_override.startswith(("http://", "https://")) and s.url_override.endswith("/")
    assert s.min_interval_s <= s.max_interval_s
    assert isinstance(s.state_directory, Path) and isinstance(s.offline_directory, Path)


def assert_clear(exc: ConfigError, *culprits: str) -> None:
    """One line, and it names one of `culprits` (a file, a variable) or an option."""
    text = str(exc)
    assert text and len(text.splitlines()) == 1 and "\r" not in text, text
    assert any(c in text for c in (*culprits, *OPTION_NAMES)), text


# -- TOML -------------------------------------------------------------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string holding `text` exactly (control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    """`value` written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".e") else text + ".0"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(value)


def near(opt_bound: float | None) -> st.SearchStrategy[float]:
    """Numbers at and just past a bound."""
    if opt_bound is None:
        return st.nothing()
    return st.sampled_from([opt_bound, opt_bound - 1, opt_bound + 1, opt_bound * 10, -opt_bound])


BOUNDS = [b for o in OPTIONS for b in (o.minimum, o.maximum) if b is not None]
SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64, 0, -1]),
    st.sampled_from(BOUNDS).flatmap(near),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["", "max", "~", "~nosuchuser-fuzz/x", "/tmp/x\x00y", "http://h", "DEBUG", "Json", "\n"]
    ),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=5), SCALARS, max_size=2),
)
NAMES = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=12))
TABLES = st.dictionaries(
    st.one_of(st.sampled_from(SECTIONS), st.text(min_size=1, max_size=10)),
    st.one_of(st.dictionaries(NAMES, VALUES, max_size=4), SCALARS),
    max_size=3,
)


def render_toml(tables: Mapping[str, object]) -> str:
    """Top-level scalars first (TOML wants them before any table), then each [table]."""
    lines = [
        f"{toml_string(k)} = {toml_value(v)}" for k, v in tables.items() if not isinstance(v, dict)
    ]
    for name, table in tables.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_string(name)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@FUZZ
@given(tables=TABLES)
@example(tables={"agent": {"stop_timeout_s": 10**400}})
@example(tables={"agent": {"state_directory": "~nosuchuser-fuzz/x"}})
@example(tables={"comet": {"api_key_file": "/tmp/x\x00y"}})
@example(tables={"a\nb": {"x": 1}})
@example(tables={"log": {"l\u2028evel": "x"}})
def test_random_toml_gives_settings_or_one_clear_line(tables: dict[str, object]) -> None:
    """Random tables, keys and values in the TOML file: valid Settings or one line naming it."""
    with sandbox() as base:
        path = base / "etc.toml"
        path.write_text(render_toml(tables), encoding="utf-8")
        try:
            s = load(base)
        except ConfigError as exc:
            assert_clear(exc, str(path))
        else:
            assert_valid(s)


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_garbage_toml_file_gives_one_clear_line(data: bytes) -> None:
    """Bytes that are mostly not TOML at all: ConfigError naming the file, or valid Settings."""
    with sandbox() as base:
        path = base / "etc.toml"
        path.write_bytes(data)
        try:
            s = load(base)
        except ConfigError as exc:
            assert_clear(exc, str(path))
        else:
            assert_valid(s)


# -- ~/.comet.config (INI) ------------------------------------------------------------------

INI_PLACES = sorted({o.ini_place for o in OPTIONS if o.ini_place is not None})
INI_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)


@st.composite
def ini_files(draw: st.DrawFn) -> str:
    """An INI file: known sections and keys with random values, and random lines among them."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            section, key = draw(st.sampled_from(INI_PLACES))
            lines += [f"[{section}]", f"{key} = {draw(INI_TEXT)}"]
        elif kind == 1:
            lines.append(f"[{draw(INI_TEXT)}]")
        elif kind == 2:
            lines.append(f"{draw(INI_TEXT)} = {draw(INI_TEXT)}")
        else:
            lines.append(draw(INI_TEXT))
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=ini_files())
@example(text="[comet]\napi_key = two words\n")
@example(text="[comet]\nworkspace = a\n  continued\n")
@example(text="[comet]\nx = 1\n[comet]\n")
def test_random_ini_gives_settings_or_one_clear_line(text: str) -> None:
    """Random ~/.comet.config content: valid Settings or one line naming the file."""
    with sandbox() as base:
        path = base / "home" / ".comet.config"
        path.write_text(text, encoding="utf-8")
        try:
            s = load(base)
        except ConfigError as exc:
            assert_clear(exc, str(path))
        else:
            assert_valid(s)


# -- environment ----------------------------------------------------------------------------

# The environment cannot hold NUL (execve), so none is generated.
ENV_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
    st.sampled_from(
        [
            "nan",
            "inf",
            "-1",
            "0",
            "1e999",
            "9" * 400,
            "9" * 5000,
            "1_0",
            " true ",
            "~",
            "~nosuchuser-fuzz",
        ]
    ),
    st.integers().map(str),
    st.floats().map(str),
)


@FUZZ
@given(env=st.dictionaries(st.sampled_from(ENV_NAMES), ENV_TEXT, max_size=6))
@example(env={"COMET_GIT_DIRECTORY": "~nosuchuser-fuzz/x"})
@example(env={"COMET_AGENT_BATCH_ITEMS": "9" * 5000})
@example(env={"COMET_AGENT_API_KEY_FILE": "~nosuchuser-fuzz/key"})
@example(env={"COMET_CONFIG": "~nosuchuser-fuzz"})
@example(env={"COMET_AGENT_CONFIG": "~nosuchuser-fuzz/c.toml"})
@example(env={"COMET_API_KEY": "k\u2028ey"})
def test_random_environment_gives_settings_or_one_clear_line(env: dict[str, str]) -> None:
    """Random strings in every option's variable: valid Settings or one line naming it."""
    with sandbox() as base:
        try:
            s = load(base, env)
        except ConfigError as exc:
            named = [text for v in env.values() if v.strip() for text in (v, repr(v))]
            assert_clear(exc, *env, *named)  # the variable, or the file it names
        else:
            assert_valid(s)


# -- regressions found by the properties above -------------------------------------------------


def test_huge_integer_for_a_float_option_is_out_of_range(tmp_path: Path) -> None:
    """A 400-digit integer for a float option is a bounds error, not an OverflowError."""
    (tmp_path / "home").mkdir()
    (tmp_path / "etc.toml").write_text("[agent]\nstop_timeout_s = " + "9" * 400 + "\n")
    with pytest.raises(ConfigError, match=r"^\[agent\] stop_timeout_s must be between 0 and 3600"):
        load(tmp_path)


def test_unknown_user_in_a_path_is_a_config_error(tmp_path: Path) -> None:
    """ "~nosuchuser/x" as a path (file or variable) is one line naming it, not a RuntimeError."""
    (tmp_path / "home").mkdir()
    (tmp_path / "etc.toml").write_text('[agent]\nstate_directory = "~nosuchuser-fuzz/x"\n')
    with pytest.raises(
        ConfigError,
        match=r"cannot expand the ~ in '~nosuchuser-fuzz/x' \(\[agent\] state_directory",
    ):
        load(tmp_path)
    (tmp_path / "etc.toml").unlink()
    for name in ("COMET_AGENT_CONFIG", "COMET_CONFIG", "COMET_AGENT_API_KEY_FILE"):
        with pytest.raises(ConfigError, match=f"cannot expand the ~ in .* \\({name}"):
            load(tmp_path, {name: "~nosuchuser-fuzz/f"})


def test_nul_in_a_path_is_a_config_error(tmp_path: Path) -> None:
    """A TOML path holding NUL ("\\u0000") is refused, not a ValueError from open()."""
    (tmp_path / "home").mkdir()
    (tmp_path / "etc.toml").write_text('[comet]\napi_key_file = "/tmp/a\\u0000b"\n')
    with pytest.raises(
        ConfigError, match=r"^\[comet\] api_key_file must be a path, got '/tmp/a\\x00b'"
    ):
        load(tmp_path)


def test_line_breaks_in_names_are_escaped(tmp_path: Path) -> None:
    """A section, key or file name with a line break is shown escaped: one line still."""
    (tmp_path / "home").mkdir()
    (tmp_path / "etc.toml").write_text('["a\\nb"]\nx = 1\n[log]\n"l\\u2028evel" = 1\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value).startswith("unknown section ['a\\nb'] in ")
    (tmp_path / "etc.toml").write_text('[log]\n"l\\u2028evel" = 1\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert str(caught.value).startswith("unknown key [log] 'l\\u2028evel' in ")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"COMET_AGENT_CONFIG": "new\nline.toml"})
    assert str(caught.value) == (
        "config file 'new\\nline.toml' does not exist; create it or fix COMET_AGENT_CONFIG"
    )


def test_ini_file_name_too_long_is_a_config_error(tmp_path: Path) -> None:
    """COMET_CONFIG naming a file whose name is too long: one line, not an OSError."""
    (tmp_path / "home").mkdir()
    with pytest.raises(ConfigError, match=r"cannot be read: File name too long$"):
        load(tmp_path, {"COMET_CONFIG": "9" * 400})


def test_config_variable_naming_a_directory_says_so(tmp_path: Path) -> None:
    """COMET_AGENT_CONFIG naming a directory: the message names the variable and the fix."""
    (tmp_path / "home").mkdir()
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"COMET_AGENT_CONFIG": str(tmp_path)})
    assert str(caught.value) == (
        f"config file {tmp_path} (from COMET_AGENT_CONFIG) cannot be read (Is a directory); "
        "name the file itself"
    )
