"""What counts as a leak of the canary key, and where the security tests look for one."""

from __future__ import annotations

import resource
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.helpers import CANARY_KEY, agent_argv

PIECE = 12  # a third of a real key would already narrow a search: any 12 characters count
PIECES = frozenset(CANARY_KEY[i : i + PIECE] for i in range(len(CANARY_KEY) - PIECE + 1))


def leaks_in(data: str | bytes) -> list[str]:
    """The pieces of the canary key found in `data`."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    return sorted(piece for piece in PIECES if piece in text)


def tree_leaks(root: Path) -> dict[str, list[str]]:
    """Every file under `root` (zip members read one by one) that holds a piece of the key."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if hits := leaks_in(raw):
            found[str(path)] = hits
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    if hits := leaks_in(zf.read(member)):
                        found[f"{path}!{member}"] = hits
    return found


def launcher(
    args: Sequence[str], *, umask: int | None = None, core_soft: int | None = None
) -> list[str]:
    """argv that starts the agent with `umask` and a soft core limit set first (exec, same pid)."""
    code = (
        "import os, resource, sys\n"
        f"if {umask!r} is not None: os.umask({umask!r})\n"
        f"if {core_soft!r} is not None:\n"
        "    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]\n"
        f"    resource.setrlimit(resource.RLIMIT_CORE, ({core_soft!r}, hard))\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n"
    )
    argv = agent_argv()
    if len(argv) == 1:
        return [sys.executable, "-c", code, argv[0], *args]
    return [sys.executable, "-c", code, sys.executable, *argv[1:], *args]


def can_raise_core_limit(to: int) -> bool:
    """Whether an unprivileged process here may set its soft core limit to `to`."""
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    return hard == resource.RLIM_INFINITY or hard >= to


def core_limits(pid: int) -> tuple[str, str]:
    """The (soft, hard) "Max core file size" of a process, as /proc/<pid>/limits shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError(f"/proc/{pid}/limits has no core line")


def proc_text(pid: int, name: str) -> bytes:
    """/proc/<pid>/<name>, or b"" when the process is gone or hides it."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def environ_of(pid: int) -> Mapping[str, str]:
    """The environment a process started with."""
    raw = proc_text(pid, "environ")
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}
