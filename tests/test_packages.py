"""installedPackages from the training's own interpreter: a real second venv, real subprocesses."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from agent.collect import packages
from agent.collect.packages import PythonEnv
from agent.errors import CollectorError

MINOR = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module", name="venv")
def _venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second virtual environment (no pip) holding two hand-made distributions."""
    root = tmp_path_factory.mktemp("target") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = root / "lib" / MINOR / "site-packages"
    for name, version in (("Demo_Pkg", "1.2.3"), ("alpha", "0.1")):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
        )
    return root


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _env(*dirs: Path) -> dict[str, str]:
    return {"PATH": ":".join([*(str(d) for d in dirs), "/usr/bin", "/bin"])}


def test_python_on_path_is_probed(venv: Path, tmp_path: Path) -> None:
    """`python train.py` with the venv first on the child's PATH lists the venv's packages."""
    env, notes = packages.python_env(["python", "train.py"], env=_env(venv / "bin"), cwd=tmp_path)
    assert notes == []
    assert env == PythonEnv(
        executable=str(venv / "bin" / "python"),
        version=platform.python_version(),
        version_verbose=sys.version,
        packages=("alpha==0.1", "Demo-Pkg==1.2.3"),
        source="target",
    )


def test_absolute_interpreter_with_module(venv: Path, tmp_path: Path) -> None:
    """`/venv/bin/python3.X -m torch.distributed.run ...` is probed as given."""
    python = venv / "bin" / MINOR
    argv = [str(python), "-m", "torch.distributed.run", "--nproc-per-node=2", "train.py"]
    env, notes = packages.python_env(argv, env=_env(), cwd=tmp_path)
    assert (env.executable, env.packages, notes) == (
        str(python),
        ("alpha==0.1", "Demo-Pkg==1.2.3"),
        [],
    )


def test_console_script_shebang_names_the_interpreter(venv: Path, tmp_path: Path) -> None:
    """A `torchrun`-like script whose shebang is the venv's python: that python is probed."""
    python = venv / "bin" / MINOR
    _script(tmp_path / "bin" / "torchrun", f"#!{python}\nimport sys\n")
    found = packages.find_interpreter(["torchrun", "train.py"], _env(tmp_path / "bin"), tmp_path)
    assert found == str(python)


def test_env_shebang_looks_up_path(venv: Path, tmp_path: Path) -> None:
    """`#!/usr/bin/env python3` resolves python3 in the child's PATH; a relative script works."""
    _script(tmp_path / "train.py", "#!/usr/bin/env -S python3 -u\nprint('hi')\n")
    found = packages.find_interpreter(["./train.py"], _env(venv / "bin"), tmp_path)
    assert found == str(venv / "bin" / "python3")


def test_not_python_falls_back_to_the_agent(tmp_path: Path) -> None:
    """`bash run.sh` has no Python to ask: the agent's own interpreter, and a note saying so."""
    env, notes = packages.python_env(["bash", "run.sh"], env=_env(), cwd=tmp_path)
    assert (env.executable, env.source) == (sys.executable, "agent")
    assert notes == ["python packages: bash is not a Python interpreter; listing the agent's own"]


def test_missing_command_falls_back(tmp_path: Path) -> None:
    """A command not on PATH cannot be probed."""
    env, notes = packages.python_env(["no-such-cmd"], env=_env(), cwd=tmp_path)
    assert env.source == "agent"
    assert notes == [
        "python packages: no-such-cmd is not a Python interpreter; listing the agent's own"
    ]


def test_failing_interpreter_gives_its_last_error_line(tmp_path: Path) -> None:
    """An interpreter that exits non-zero: the note quotes the last line of its stderr."""
    fake = _script(
        tmp_path / "bin" / "python3", "#!/bin/sh\necho warming up >&2\necho boom >&2\nexit 3\n"
    )
    env, notes = packages.python_env(["python3", "x.py"], env=_env(fake.parent), cwd=tmp_path)
    assert env.source == "agent"
    assert notes == [
        f"python packages: {fake} failed listing its packages: boom; listing the agent's own"
    ]


def test_hanging_interpreter_is_cut_off(tmp_path: Path) -> None:
    """An interpreter that never answers is killed at the timeout."""
    fake = _script(tmp_path / "bin" / "python3", "#!/bin/sh\nexec sleep 30\n")
    env, notes = packages.python_env(
        ["python3"], env=_env(fake.parent), cwd=tmp_path, timeout_s=0.5
    )
    assert env.source == "agent"
    assert notes == [
        f"python packages: {fake} did not list its packages within 0.5 s; listing the agent's own"
    ]


def test_interpreter_printing_garbage(tmp_path: Path) -> None:
    """Output that is not the probe's JSON is an error naming what was printed."""
    fake = _script(tmp_path / "bin" / "python3", "#!/bin/sh\necho hello\n")
    with pytest.raises(CollectorError) as caught:
        packages.probe(str(fake), _env(), tmp_path)
    assert str(caught.value) == f"{fake}: the Python probe printed no JSON: 'hello'"


def test_explicit_interpreter_that_does_not_exist(tmp_path: Path) -> None:
    """Target.python naming a missing file: a note, and the agent's own packages."""
    missing = tmp_path / "nope" / "python"
    env, notes = packages.python_env(["x"], python=str(missing), env=_env(), cwd=tmp_path)
    assert env.source == "agent"
    assert notes == [f"python packages: {missing} does not exist; listing the agent's own"]


def test_project_module_cannot_shadow_the_probe(venv: Path, tmp_path: Path) -> None:
    """A json.py in the working directory does not break the probe."""
    (tmp_path / "json.py").write_text("raise SystemExit('shadowed')\n")
    env, notes = packages.python_env(["python"], env=_env(venv / "bin"), cwd=tmp_path)
    assert (env.packages, notes) == (("alpha==0.1", "Demo-Pkg==1.2.3"), [])


def test_agent_python_lists_its_own_distributions() -> None:
    """The agent's interpreter lists what importlib.metadata sees, psutil among them."""
    env = packages.agent_python()
    assert f"psutil=={metadata.version('psutil')}" in env.packages
    assert list(env.packages) == sorted(env.packages, key=lambda e: (e.lower(), e))
    assert (env.executable, env.version, env.source) == (
        sys.executable,
        platform.python_version(),
        "agent",
    )


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"#!/usr/bin/python3\n", ["/usr/bin/python3"]),
        (b"#!/usr/bin/env python3\n", ["python3"]),
        (b"#! /usr/bin/env -S PYTHONUNBUFFERED=1 python3.11 -u\n", ["python3.11", "-u"]),
        (b"#!/bin/sh\n", ["/bin/sh"]),
        (b"#!\n", None),
        (b"import os\n", None),
        (b"", None),
    ],
)
def test_parse_shebang(line: bytes, command: list[str] | None) -> None:
    """The command a #! line runs, with env and its options removed."""
    assert packages.parse_shebang(line) == command


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("python", True),
        ("/venv/bin/python3.11", True),
        ("pypy3", True),
        ("python3.12d", True),
        ("torchrun", False),
        ("python-config", False),
        ("ipython", False),
    ],
)
def test_is_python(name: str, expected: bool) -> None:
    """Interpreter names are recognised; tools named after Python are not."""
    assert packages.is_python(name) is expected


@pytest.mark.parametrize(
    "stdout",
    [
        '{"executable": "/x"}',
        '{"packages": 3, "executable": 1, "version": 1, "version_verbose": 1}',
    ],
)
def test_probe_output_malformed(stdout: str) -> None:
    """JSON missing a key or with a wrong type is an error, not a crash."""
    with pytest.raises(CollectorError, match="unexpected JSON"):
        packages.parse_probe_output(stdout)


def test_probe_output_keeps_the_last_json_line() -> None:
    """A sitecustomize that prints first does not confuse the parse."""
    stdout = (
        "{noise\n"
        '{"executable": "/p", "version": "3.9.1", "version_verbose": "3.9.1 (x)",'
        ' "packages": ["b==1", "A==2", "b==1"]}\n'
    )
    assert packages.parse_probe_output(stdout) == PythonEnv(
        "/p", "3.9.1", "3.9.1 (x)", ("A==2", "b==1"), "target"
    )
