"""installedPackages and the Python fields, taken from the interpreter that runs the training.

The agent may run in its own virtual environment while the training runs in
another, so the packages worth recording are the target's. Given the target's
argv, ``find_interpreter`` finds that Python (``python train.py``,
``/venv/bin/python3.11 -m ...``, or a script such as ``torchrun`` whose shebang
names a Python) and ``probe`` runs it once with a small inline script that
prints what ``importlib.metadata`` sees. When that fails, the agent's own
interpreter is described instead and the caller gets a note saying why.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent.errors import CollectorError, NoData

PROBE_TIMEOUT_S = 10.0
_PYTHON_NAME = re.compile(r"^(python|pypy)(\d+(\.\d+)?)?[dmw]?$")
_SHEBANG_LIMIT = 512

# Runs in the target interpreter: no f-strings, so any Python 3 (and 2.7) can run it. The
# empty and "." entries leave sys.path first, so a json.py in the project cannot shadow json.
PROBE_SCRIPT = """\
import sys
sys.path = [p for p in sys.path if p not in ("", ".")]
import json, platform
try:
    from importlib import metadata
    dists = [(d.metadata["Name"], d.version) for d in metadata.distributions()]
except ImportError:
    import pkg_resources
    dists = [(d.project_name, d.version) for d in pkg_resources.working_set]
print(json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "version_verbose": sys.version,
    "packages": ["%s==%s" % (n, v) for n, v in dists if n and v],
}))
"""


@dataclass(frozen=True)
class PythonEnv:
    """One interpreter: what Set System Details says about it."""

    executable: str
    version: str
    version_verbose: str
    packages: tuple[str, ...]  # "name==version", sorted
    source: str  # "target": the training's interpreter; "agent": the agent's own


def sort_packages(entries: Iterable[str]) -> tuple[str, ...]:
    """Return the ``name==version`` entries deduplicated and sorted by name, case-insensitively."""
    return tuple(sorted(set(entries), key=lambda e: (e.lower(), e)))


def is_python(name: str) -> bool:
    """Whether a file name looks like a Python interpreter (python, python3.11, pypy3)."""
    return _PYTHON_NAME.match(Path(name).name) is not None


def parse_shebang(first_line: bytes) -> list[str] | None:
    """Return the command a ``#!`` line runs (``env`` and its options removed), or None."""
    if not first_line.startswith(b"#!"):
        return None
    words = first_line[2:].decode("utf-8", errors="replace").split()
    if words and Path(words[0]).name == "env":
        words = words[1:]
        while words and (words[0].startswith("-") or "=" in words[0]):
            words = words[1:]  # env -S, -u NAME is rare enough to ignore its argument
    return words or None


def _resolve(command: str, env: Mapping[str, str], cwd: Path) -> str | None:
    if "/" in command:
        path = cwd / command
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(command, path=env.get("PATH", os.defpath))


def _first_line(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.readline(_SHEBANG_LIMIT)
    except OSError:
        return b""


def find_interpreter(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> str | None:
    """Return the path of the Python that runs `argv`, looked up in the child's PATH, or None."""
    if not argv:
        return None
    program = _resolve(argv[0], env, cwd)
    if program is None:
        return None
    if is_python(argv[0]) or is_python(program):
        return program
    shebang = parse_shebang(_first_line(program))
    if shebang and is_python(shebang[0]):
        return _resolve(shebang[0], env, cwd)
    return None


def parse_probe_output(stdout: str) -> PythonEnv:
    """Return the interpreter described by the probe script's last JSON line."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise CollectorError(f"the Python probe printed no JSON: {stdout.strip()[:60]!r}")
    try:
        data = json.loads(lines[-1])
        packages = data["packages"]
        env = PythonEnv(
            executable=str(data["executable"]),
            version=str(data["version"]),
            version_verbose=str(data["version_verbose"]),
            packages=sort_packages(str(p) for p in packages),
            source="target",
        )
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: "[[[[..."
        raise CollectorError(
            f"the Python probe printed unexpected JSON: {lines[-1][:60]!r}"
        ) from None
    return env


def probe(
    python: str,
    env: Mapping[str, str],
    cwd: Path,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> PythonEnv:
    """Run `python` once with the probe script and return what it reports."""
    try:
        done = subprocess.run(
            [python, "-c", PROBE_SCRIPT],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise NoData(f"{python} does not exist") from None
    except subprocess.TimeoutExpired:
        raise CollectorError(f"{python} did not list its packages within {timeout_s:g} s") from None
    except OSError as exc:
        raise CollectorError(f"cannot run {python}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise CollectorError(f"{python} failed listing its packages: {last[0][:120]}")
    try:
        return parse_probe_output(done.stdout.decode(errors="replace"))
    except CollectorError as exc:
        raise CollectorError(f"{python}: {exc}") from None


def agent_python() -> PythonEnv:
    """Describe the interpreter the agent itself runs on.

    Listed by a child of the same interpreter, as a target's is: importlib.metadata (and
    the email package it loads) would otherwise stay in the daemon's memory, ~2 MB, for
    one list sent at start. In-process only when the child cannot run.
    """
    try:
        return replace(probe(sys.executable, os.environ, Path("/")), source="agent")
    except CollectorError:
        pass  # the child could not run (no fork, a broken interpreter path): listed here
    from importlib import metadata

    names = ((d.metadata["Name"], d.version) for d in metadata.distributions())
    return PythonEnv(
        executable=sys.executable,
        version=platform.python_version(),
        version_verbose=sys.version,
        packages=sort_packages(f"{n}=={v}" for n, v in names if n and v),
        source="agent",
    )


def python_env(
    argv: Sequence[str],
    *,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> tuple[PythonEnv, list[str]]:
    """Return the target's interpreter (or else the agent's) and notes on why it fell back."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    target = python or find_interpreter(argv, env, cwd)
    if target is None:
        what = " ".join(argv[:1]) or "no command"
        note = f"python packages: {what} is not a Python interpreter; listing the agent's own"
        return agent_python(), [note]
    try:
        return probe(target, env, cwd, timeout_s), []
    except CollectorError as exc:
        return agent_python(), [f"python packages: {exc}; listing the agent's own"]
