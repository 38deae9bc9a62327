"""The directories the agent keeps its files in: its own, private, never another user's.

A state or offline directory given to the agent may be one it does not own:
a Kubernetes ``emptyDir`` (root, 0777), a shared volume with an ``fsGroup``,
``/tmp``. The agent never ``chmod``s what it does not own; it keeps its files
in a private subdirectory of its own there, ``comet-agent-<uid>`` (0700), as
``ssh-agent`` and ``tmux`` do in ``/tmp``. ``effective()`` says which
directory that is (config uses it, so every command finds the same place);
``make_private()`` creates it and checks it is a real directory this user
owns. Root is the exception: it refuses a directory another user owns, since
that user could swap what root writes for a link to a file of root's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from agent.errors import ConfigError

PRIVATE_DIR = 0o700


def effective(path: Path) -> Path:
    """Return where the agent's files go for the configured directory `path`.

    `path` itself when it does not exist yet or this user owns it; else this
    user's private subdirectory inside it (for root: `path`, refused later).
    """
    uid = os.geteuid()
    try:
        owner = path.stat().st_uid
    except OSError:
        return path
    if owner == uid or uid == 0:
        return path
    return path / f"comet-agent-{uid}"


def make_private(path: Path, what: str, setting: str) -> None:
    """Create `path` (and missing parents) 0700, or raise ConfigError naming the fix.

    `what` names the directory in messages ("state directory"); `setting` is
    where the user changes it ("--state-dir or [agent] state_directory").
    """
    uid = os.geteuid()
    try:
        # Each missing parent too: mkdir -p would make them 0777 & ~umask (0777 under umask 0).
        for missing in reversed([p for p in (path, *path.parents) if not p.exists()]):
            missing.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        parent = path.parent
        hint = (
            f"; {parent} is owned by uid {_owner(parent)}: give uid {uid} write access to it "
            "(Kubernetes: fsGroup; Compose: a volume made in the image) or set " + setting
            if isinstance(exc, PermissionError)
            else "; set " + setting + " to a writable place"
        )
        raise ConfigError(f"cannot create the {what} {path}: {exc.strerror}{hint}") from None
    if stat.S_ISLNK(st.st_mode):
        st = path.stat()  # a link the user configured is theirs to make; its target is checked
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"the {what} {path} is not a directory; set {setting}")
    if st.st_uid != uid:
        raise ConfigError(
            f"the {what} {path} is owned by uid {st.st_uid}, not this user (uid {uid}); the "
            f"agent keeps its files only in a directory it owns: set {setting}"
        )
    if st.st_mode & 0o077:
        path.chmod(PRIVATE_DIR)  # ours: make it private


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open that refuses a symbolic link at `path` (ELOOP) instead of following it."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def scratch_dirs() -> Iterator[Path]:
    """Private (0700) fallback directories, made on demand: $TMPDIR, then /dev/shm."""
    import tempfile  # `run`'s fallbacks only: no other command needs it

    # mkdtemp makes a new 0700 directory of its own, never a fixed, guessable name.
    for parent in (tempfile.gettempdir(), "/dev/shm"):  # noqa: S108
        try:
            yield Path(tempfile.mkdtemp(prefix=f"comet-agent-{os.geteuid()}-", dir=parent))
        except OSError:
            continue


def _owner(path: Path) -> str:
    try:
        return str(path.stat().st_uid)
    except OSError:
        return "?"
