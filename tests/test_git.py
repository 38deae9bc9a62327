"""Git metadata and patch from real repositories made in temporary directories."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from agent.collect import git as gitc
from agent.collect.git import Git, GitInfo
from agent.errors import CollectorError, NoData

GIT = shutil.which("git") or pytest.skip("git is not installed", allow_module_level=True)


def sh(cwd: Path, env: dict[str, str], *args: str) -> str:
    """Run a real git command for the test's setup and return its output."""
    done = subprocess.run(
        [GIT, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture(name="repo")
def _repo(tmp_path: Path, genv: dict[str, str]) -> Path:
    """A repository on main with two commits and a user name."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, genv, "init", "-q", "-b", "main")
    sh(repo, genv, "config", "user.name", "Probe User")
    (repo / "a.txt").write_text("one\n")
    sh(repo, genv, "add", "a.txt")
    sh(repo, genv, "commit", "-q", "-m", "first")
    (repo / "b.txt").write_text("two\n")
    sh(repo, genv, "add", "b.txt")
    sh(repo, genv, "commit", "-q", "-m", "second")
    return repo


def shas(repo: Path, genv: dict[str, str]) -> list[str]:
    """Commit shas, oldest first."""
    return sh(repo, genv, "rev-list", "--reverse", "HEAD").splitlines()


def test_clean_repository_with_origin(repo: Path, genv: dict[str, str]) -> None:
    """All five fields are known; a clean tree has no patch."""
    sh(repo, genv, "remote", "add", "origin", "https://example.com/acme/agent.git")
    first, second = shas(repo, genv)
    g = Git(repo, timeout_s=10, env=genv)
    assert gitc.read_git_info(g) == (
        GitInfo(
            user="Probe User",
            root=first,
            branch="refs/heads/main",
            parent=second,
            origin="https://example.com/acme/agent.git",
        ),
        [],
    )
    assert gitc.read_diff(g, max_bytes=10_000_000) == (None, [])


def test_dirty_tree_patch_has_staged_and_unstaged(repo: Path, genv: dict[str, str]) -> None:
    """The patch is `git diff HEAD`: staged and unstaged changes, untracked files left out."""
    (repo / "a.txt").write_text("one changed\n")  # unstaged
    (repo / "c.txt").write_text("staged\n")
    sh(repo, genv, "add", "c.txt")
    (repo / "untracked.txt").write_text("not in the patch\n")
    diff, notes = gitc.read_diff(Git(repo, timeout_s=10, env=genv), max_bytes=10_000_000)
    assert notes == []
    assert diff is not None
    assert diff.decode() == sh(repo, genv, "diff", "HEAD") + "\n"
    assert b"+one changed" in diff
    assert b"+staged" in diff
    assert b"untracked" not in diff
    with zipfile.ZipFile(io.BytesIO(gitc.zip_patch(diff))) as zf:
        assert zf.namelist() == ["git_diff.patch"]
        assert zf.getinfo("git_diff.patch").compress_type == zipfile.ZIP_DEFLATED
        assert zf.read("git_diff.patch") == diff


def test_detached_head(repo: Path, genv: dict[str, str]) -> None:
    """A detached HEAD has no branch; the parent is the checked-out commit."""
    first, _ = shas(repo, genv)
    sh(repo, genv, "checkout", "-q", "--detach", first)
    info, notes = gitc.read_git_info(Git(repo, timeout_s=10, env=genv))
    assert (info.branch, info.parent, info.root) == (None, first, first)
    assert notes == [
        "git: HEAD is detached; branch is left empty",
        "git: no remote named origin; origin is left empty",
    ]


def test_shallow_clone_has_no_root(repo: Path, tmp_path: Path, genv: dict[str, str]) -> None:
    """In a --depth 1 clone the root commit is unknown; the rest is still sent."""
    _, second = shas(repo, genv)
    clone = tmp_path / "clone"
    sh(tmp_path, genv, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    info, notes = gitc.read_git_info(Git(clone, timeout_s=10, env=genv))
    assert info == GitInfo(
        user=None,
        root=None,
        branch="refs/heads/main",
        parent=second,
        origin=f"file://{repo}",
    )
    assert notes == [
        f"git: {clone} is a shallow clone, so its root commit is unknown; "
        "run git fetch --unshallow to send it"
    ]


def test_token_in_remote_url_is_stripped(repo: Path, genv: dict[str, str]) -> None:
    """A token in the origin URL never reaches the metadata."""
    url = "https://user:ghp_SECRETTOKEN@github.com/acme/agent.git?private_token=SECRET2"
    sh(repo, genv, "remote", "add", "origin", url)
    info, _ = gitc.read_git_info(Git(repo, timeout_s=10, env=genv))
    assert info.origin == "https://github.com/acme/agent.git"


def test_fresh_repository_without_commits(tmp_path: Path, genv: dict[str, str]) -> None:
    """Before the first commit: branch known, no root, parent or patch."""
    repo = tmp_path / "fresh"
    repo.mkdir()
    sh(repo, genv, "init", "-q", "-b", "main")
    g = Git(repo, timeout_s=10, env=genv)
    info, notes = gitc.read_git_info(g)
    assert info == GitInfo(None, None, "refs/heads/main", None, None)
    assert notes[0] == f"git: {repo} has no commit yet; root and parent are left empty"
    assert gitc.read_diff(g, 1000) == (None, [f"git: {repo} has no commit yet; no patch"])


def test_not_a_repository(tmp_path: Path, genv: dict[str, str]) -> None:
    """Outside a repository the facts are skipped with one line saying where."""
    with pytest.raises(NoData) as caught:
        gitc.read_git_info(Git(tmp_path, timeout_s=10, env=genv))
    assert str(caught.value) == f"{tmp_path} is not in a git repository; git facts are skipped"


def test_git_absent(repo: Path, tmp_path: Path, genv: dict[str, str]) -> None:
    """Without git on PATH the facts are skipped, not crashed on."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(NoData, match="git is not installed"):
        gitc.read_git_info(Git(repo, timeout_s=10, env={**genv, "PATH": str(empty)}))


def test_hanging_git_times_out(repo: Path, tmp_path: Path, genv: dict[str, str]) -> None:
    """A git that never answers is stopped at [git] timeout_s."""
    fake = tmp_path / "slow-bin" / "git"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    g = Git(repo, timeout_s=0.3, env={**genv, "PATH": f"{fake.parent}:/usr/bin:/bin"})
    with pytest.raises(CollectorError, match=r"git rev-parse took over 0\.3 s .* raise \[git\]"):
        gitc.read_git_info(g)


def test_oversize_patch_is_skipped_with_its_size(repo: Path, genv: dict[str, str]) -> None:
    """A patch over patch_max_bytes is not sent; the note gives its size and the setting."""
    (repo / "a.txt").write_text("x" * 5000 + "\n")
    size = len(sh(repo, genv, "diff", "HEAD")) + 1  # the trailing newline sh() strips
    diff, notes = gitc.read_diff(Git(repo, timeout_s=10, env=genv), max_bytes=1000)
    assert diff is None
    assert notes == [
        f"git: the patch is {size} bytes, over [git] patch_max_bytes (1000); "
        "not sent. Raise patch_max_bytes to send it"
    ]


def test_dubious_ownership_names_the_fix() -> None:
    """git's refusal of another user's repository becomes a one-line fix."""
    stderr = (
        "fatal: detected dubious ownership in repository at '/srv/repo'\n"
        "To add an exception for this directory, call:\n"
    )
    assert str(gitc._fatal(Path("/srv/repo/src"), stderr)) == (
        "git refuses /srv/repo: it belongs to another user; "
        "run git config --global --add safe.directory /srv/repo"
    )


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://user:tok@github.com/a/b.git", "https://github.com/a/b.git"),
        ("https://ghp_abc@github.com/a/b.git", "https://github.com/a/b.git"),
        (
            "https://oauth2:glpat-x@gitlab.example.com:8443/a/b",
            "https://gitlab.example.com:8443/a/b",
        ),
        ("https://github.com/a/b.git?access_token=x#frag", "https://github.com/a/b.git"),
        ("ssh://git:pw@host:2222/a/b.git", "ssh://git@host:2222/a/b.git"),
        ("ssh://git@host/a/b.git", "ssh://git@host/a/b.git"),
        ("git@github.com:a/b.git", "git@github.com:a/b.git"),
        ("deploy:s3cret@host:a/b.git?t=1", "deploy@host:a/b.git"),
        ("/srv/git/b.git", "/srv/git/b.git"),
        ("file:///srv/git/b.git", "file:///srv/git/b.git"),
    ],
)
def test_strip_credentials(url: str, clean: str) -> None:
    """Passwords, tokens and query strings go; hosts, ports, paths and ssh users stay."""
    assert gitc.strip_credentials(url) == clean
