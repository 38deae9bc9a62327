"""Git metadata and the uncommitted patch of the repository the training runs in (wire §3.5).

``git`` runs as a subprocess (an argv list, never a shell) with a timeout per
command, no prompts and no optional locks, so the agent never blocks on a
credential prompt nor fights the user's own git commands for the index lock.
Outside a repository, or without git, the readers raise ``NoData``; in a
shallow clone, a detached HEAD, a fresh repository or one with no remote the
unknown fields are None and a note says why.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast
from urllib.parse import urlsplit, urlunsplit

from agent.errors import CollectorError, NoData

PATCH_MEMBER = "git_diff.patch"  # wire §3.5: the zip's one member
_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")
_SCP_LIKE = re.compile(r"^(?P<user>[^@/]+)@(?P<host>[^:/]+):(?P<path>.*)$")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class GitInfo:
    """The five fields of Set Git Metadata; None where unknown."""

    user: str | None
    root: str | None  # the root (first) commit
    branch: str | None  # full ref name, None when HEAD is detached
    parent: str | None  # the HEAD commit
    origin: str | None  # remote "origin", credentials stripped


def strip_credentials(url: str) -> str:
    """Return a remote URL without passwords or tokens (userinfo of http(s), query strings).

    An http(s) user name is dropped too, since tokens often travel as the user name
    (``https://ghp_...@github.com/``); an ssh user name (``git@``) is kept, its password not.
    """
    if "://" in url:
        parts = urlsplit(url)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        netloc = hostport
        if at and parts.scheme in _SSH_SCHEMES:
            netloc = f"{userinfo.partition(':')[0]}@{hostport}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    match = _SCP_LIKE.match(url)
    if match:
        user = match["user"].partition(":")[0]
        return f"{user}@{match['host']}:{match['path'].partition('?')[0]}"
    return url  # a local path


class Git:
    """Runs git commands in one directory under a timeout."""

    def __init__(self, cwd: Path, timeout_s: float, env: Mapping[str, str] | None = None) -> None:
        self.cwd = cwd
        self.timeout_s = timeout_s
        self.env = {
            **(os.environ if env is None else env),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_OPTIONAL_LOCKS": "0",
            "LC_ALL": "C",
        }

    def argv(self, *args: str) -> list[str]:
        """The full command line for a git subcommand."""
        return ["git", "--no-pager", "-c", "color.ui=never", *args]

    def run(self, *args: str) -> tuple[int, str]:
        """Run one git command; return its exit code and stdout (stripped)."""
        if not self.cwd.is_dir():
            raise NoData(f"git directory {self.cwd} does not exist; fix [git] directory")
        try:
            done = subprocess.run(
                self.argv(*args),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except FileNotFoundError:
            raise NoData(
                "git is not installed (not found on PATH); git facts are skipped"
            ) from None
        except subprocess.TimeoutExpired:
            raise CollectorError(
                f"git {args[0]} took over {self.timeout_s:g} s in {self.cwd}; raise [git] timeout_s"
            ) from None
        except OSError as exc:
            raise CollectorError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        if done.returncode == 128:
            raise _fatal(self.cwd, done.stderr.decode(errors="replace"))
        return done.returncode, done.stdout.decode(errors="replace").strip()

    def value(self, *args: str) -> str | None:
        """Run a query; its output, or None when git says there is no such thing."""
        code, out = self.run(*args)
        return out if code == 0 and out else None


def _fatal(cwd: Path, stderr: str) -> CollectorError:
    if "not a git repository" in stderr:
        return NoData(f"{cwd} is not in a git repository; git facts are skipped")
    if "dubious ownership" in stderr:
        at = re.search(r"repository at '([^']+)'", stderr)
        repo = at.group(1) if at else str(cwd)
        return CollectorError(
            f"git refuses {repo}: it belongs to another user; "
            f"run git config --global --add safe.directory {repo}"
        )
    last = stderr.strip().splitlines()[-1:] or ["no message"]
    return CollectorError(f"git failed in {cwd}: {last[0][:160]}")


def read_git_info(git: Git) -> tuple[GitInfo, list[str]]:
    """Return the repository's metadata, and notes on the fields left unknown."""
    git.run("rev-parse", "--show-toplevel")  # raises NoData outside a repository
    notes: list[str] = []
    parent = git.value("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    root = None
    if parent is None:
        notes.append(f"git: {git.cwd} has no commit yet; root and parent are left empty")
    elif git.value("rev-parse", "--is-shallow-repository") == "true":
        notes.append(
            f"git: {git.cwd} is a shallow clone, so its root commit is unknown; "
            "run git fetch --unshallow to send it"
        )
    else:
        roots = git.value("rev-list", "--max-parents=0", "HEAD")
        root = roots.splitlines()[-1] if roots else None  # the oldest of merged histories
    branch = git.value("symbolic-ref", "--quiet", "HEAD")
    if branch is None:
        notes.append("git: HEAD is detached; branch is left empty")
    origin = git.value("remote", "get-url", "origin")
    if origin is None:
        notes.append("git: no remote named origin; origin is left empty")
    info = GitInfo(
        user=git.value("config", "user.name"),
        root=root,
        branch=branch,
        parent=parent,
        origin=strip_credentials(origin) if origin else None,
    )
    return info, notes


def read_diff(git: Git, max_bytes: int) -> tuple[bytes | None, list[str]]:
    """Return ``git diff HEAD`` (staged and unstaged changes), or None and a note why not.

    The output is read in chunks and stops being kept past `max_bytes`, so a huge
    diff costs no memory; it is still counted, to tell the user its size.
    """
    if git.value("rev-parse", "--verify", "--quiet", "HEAD^{commit}") is None:
        return None, [f"git: {git.cwd} has no commit yet; no patch"]
    argv = git.argv("diff", "--no-ext-diff", "--no-textconv", "HEAD", "--")
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=git.cwd,
                env=git.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        except OSError as exc:
            raise CollectorError(f"cannot run git in {git.cwd}: {exc.strerror or exc}") from None
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(git.timeout_s, kill)
        timer.start()
        kept, size = io.BytesIO(), 0
        try:
            with proc:  # closes the pipe and waits for git
                stdout = cast(IO[bytes], proc.stdout)  # stdout=PIPE above
                while chunk := stdout.read(_CHUNK):
                    size += len(chunk)
                    if size <= max_bytes:
                        kept.write(chunk)
        finally:
            timer.cancel()
        if expired.is_set():
            raise CollectorError(
                f"git diff took over {git.timeout_s:g} s in {git.cwd}; raise [git] timeout_s"
            )
        if proc.returncode != 0:
            errors.seek(0)
            raise _fatal(git.cwd, errors.read().decode(errors="replace"))
    if size == 0:
        return None, []
    if size > max_bytes:
        return None, [
            f"git: the patch is {size} bytes, over [git] patch_max_bytes ({max_bytes}); "
            "not sent. Raise patch_max_bytes to send it"
        ]
    return kept.getvalue(), []


def zip_patch(diff: bytes) -> bytes:
    """Return the zip Comet expects: one deflated member named git_diff.patch."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(PATCH_MEMBER, diff)
    return out.getvalue()
