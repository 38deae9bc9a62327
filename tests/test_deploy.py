"""The shipped deployments with their real ownerships: the agent as the unprivileged user they name.

Each layout reproduces what a manifest gives the container (a root-owned 0777
emptyDir, a root-owned 0755 hostPath, a secret mounted 0400 or 0440 with an
fsGroup, a systemd StateDirectory with a read-only home), and the agent runs
as uid 10001 through ``setpriv``, as the container would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CANARY_KEY, ROOT, agent_argv, clean_env

UID = 10001
SETPRIV = shutil.which("setpriv")


def _can_run_as_user() -> str | None:
    if os.geteuid() != 0:
        return "the tests do not run as root: they cannot switch to uid 10001"
    if SETPRIV is None:
        return "setpriv (util-linux) is not installed"
    probe = subprocess.run(
        [SETPRIV, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *agent_argv(), "--version"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        return f"uid {UID} cannot run the installed agent here (its venv is not readable)"
    return None


WHY = _can_run_as_user()
as_user = pytest.mark.skipif(WHY is not None, reason=WHY or "")


def run_as_user(
    args: list[str], env: dict[str, str], **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run the agent as uid 10001 with no supplementary groups, as a container's user."""
    assert SETPRIV is not None
    return subprocess.run(
        [SETPRIV, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *agent_argv(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=kw.get("timeout", 90),
        check=False,
        cwd=kw.get("cwd", "/"),
    )


def _root_dir(path: Path, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    path.chmod(mode)
    return path


@pytest.fixture(name="tmp_path")
def _world_tmp() -> Iterator[Path]:
    """A temp dir uid 10001 can reach (pytest's own sits under a 0700 root directory)."""
    base = Path(tempfile.mkdtemp(prefix="comet-agent-deploy-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(name="home")
def _home(tmp_path: Path) -> Path:
    """A home the user cannot write (a container's /nonexistent, systemd's ProtectHome)."""
    return _root_dir(tmp_path / "home", 0o555)


@as_user
def test_a_root_owned_0777_emptydir_is_used_through_a_private_subdirectory(
    tmp_path: Path, home: Path
) -> None:
    """Kubernetes emptyDir (root, 0777): the agent runs, keeps its files in comet-agent-10001
    (0700, its own), and never chmods the volume it does not own."""
    volume = _root_dir(tmp_path / "state", 0o777)
    offline = _root_dir(tmp_path / "offline", 0o777)
    env = clean_env(home, {"COMET_OFFLINE_DIRECTORY": str(offline)})
    done = run_as_user(["run", "--state-dir", str(volume), "--", "true"], env)
    assert done.returncode == 0, done.stderr
    mine = volume / f"comet-agent-{UID}"
    st = mine.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (UID, 0o700)
    assert volume.stat().st_mode & 0o777 == 0o777  # not chmodded
    archives = list((offline / f"comet-agent-{UID}").glob("*.zip"))
    assert len(archives) == 1, done.stderr


@as_user
def test_a_root_owned_0755_hostpath_gives_one_line_naming_the_fix(
    tmp_path: Path, home: Path
) -> None:
    """hostPath DirectoryOrCreate (root, 0755): start exits 2 with one line saying what to do."""
    volume = _root_dir(tmp_path / "state", 0o755)
    done = run_as_user(["start", "--state-dir", str(volume)], clean_env(home))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"give uid {UID} write access" in line and "--state-dir" in line


@as_user
def test_systemd_state_directory_with_a_read_only_home_keeps_offline_data_there(
    tmp_path: Path, home: Path
) -> None:
    """StateDirectory= (0700, the service's user) and ProtectHome: offline archives go under
    $STATE_DIRECTORY, never into the read-only home."""
    state = tmp_path / "var-lib-comet-agent"
    state.mkdir(mode=0o700)
    os.chown(state, UID, UID)
    env = clean_env(home, {"STATE_DIRECTORY": str(state)})
    for k in ("XDG_STATE_HOME", "XDG_DATA_HOME"):
        env.pop(k)
    done = run_as_user(["run", "--", "true"], env)
    assert done.returncode == 0, done.stderr
    assert len(list((state / "offline").glob("*.zip"))) == 1
    assert list(home.iterdir()) == []


@as_user
@pytest.mark.parametrize(
    ("mode", "group", "readable"),
    [(0o400, 0, False), (0o440, UID, True), (0o644, 0, True)],
    ids=["0400-root", "0440-fsgroup", "0644"],
)
def test_the_key_secret_is_read_through_its_group_or_named_fix(
    tmp_path: Path, home: Path, mode: int, group: int, readable: bool
) -> None:
    """A secret mounted 0400 (root) cannot be read: exit 2 naming fsGroup and defaultMode;
    0440 with the agent's group (fsGroup) is read."""
    secrets = _root_dir(tmp_path / "secret", 0o755)
    key = secrets / "comet-api-key"
    key.write_text(CANARY_KEY + "\n")
    os.chown(key, 0, group)
    key.chmod(mode)
    env = clean_env(home, {"COMET_AGENT_API_KEY_FILE": str(key)})
    done = run_as_user(["sysinfo", "--json"], env)
    if readable:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert "cannot be read" in line and "fsGroup" in line and "0440" in line
    assert CANARY_KEY not in done.stdout + done.stderr


@as_user
def test_a_planted_lock_link_is_not_followed(tmp_path: Path) -> None:
    """As root on a directory another user owns: refused (exit 2), and a planted agent.lock
    link to a file of root's leaves that file as it was."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, UID, UID)
    precious = tmp_path / "precious"
    precious.write_text("root's data\n")
    subprocess.run(
        [
            SETPRIV or "",
            f"--reuid={UID}",
            f"--regid={UID}",
            "--clear-groups",
            "ln",
            "-s",
            str(precious),
            str(theirs / "agent.lock"),
        ],
        check=True,
    )
    env = clean_env(tmp_path / "roothome")
    done = subprocess.run(
        [*agent_argv(), "start", "--state-dir", str(theirs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"owned by uid {UID}" in done.stderr
    assert precious.read_text() == "root's data\n"


# -- the manifests, read as Kubernetes reads them -------------------------------------------------


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    yaml = pytest.importorskip("yaml")
    found = []
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = doc["spec"]["template"]["spec"]
            found.append((path.name, spec))
    return found


def test_every_secret_mounted_into_a_non_root_container_is_readable_by_it() -> None:
    """defaultMode and fsGroup against each container's user: the key can be read."""
    checked = 0
    for name, spec in _pod_specs():
        pod_ctx = spec.get("securityContext", {})
        secrets = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
        for container in spec.get("initContainers", []) + spec["containers"]:
            ctx = {**pod_ctx, **container.get("securityContext", {})}
            uid = ctx.get("runAsUser", 0)
            groups = {ctx.get("runAsGroup", uid), ctx.get("fsGroup")} - {None}
            for mount in container.get("volumeMounts", []):
                secret = secrets.get(mount["name"])
                if secret is None or uid == 0:
                    continue
                mode = secret.get("defaultMode", 0o644)
                # Kubernetes: files are root-owned, their group the fsGroup when one is set.
                group_ok = bool(mode & 0o040) and pod_ctx.get("fsGroup") in groups
                assert mode & 0o004 or group_ok, (name, container["name"], oct(mode))
                checked += 1
    assert checked >= 2


def test_the_daemonset_samples_the_node_through_its_host_root() -> None:
    """The DaemonSet mounts the host's / and passes --host-root to the agent."""
    [(_, spec)] = [(n, s) for n, s in _pod_specs() if n == "daemonset.yaml"]
    [agent] = spec["containers"]
    assert agent["args"][agent["args"].index("--host-root") + 1] == "/host"
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert mounts["/host"]["readOnly"] is True


def test_the_compose_secret_is_where_the_comment_says() -> None:
    """Compose resolves secret files against the file's folder: deploy/comet-api-key."""
    yaml = pytest.importorskip("yaml")
    compose = ROOT / "deploy" / "docker-compose.yml"
    doc = yaml.safe_load(compose.read_text())
    path = (compose.parent / doc["secrets"]["comet-api-key"]["file"]).resolve()
    assert path == (ROOT / "deploy" / "comet-api-key").resolve()
    assert "deploy/comet-api-key" in compose.read_text()


DOCKER = shutil.which("docker")


@pytest.mark.slow
@pytest.mark.skipif(DOCKER is None, reason="no docker client here")
def test_the_image_runs_as_its_non_root_user(tmp_path: Path) -> None:
    """docker build, then `comet-agent --version` as uid 10001 (skipped without a daemon)."""
    assert DOCKER is not None
    if subprocess.run([DOCKER, "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no Docker daemon answers here")
    tag = "comet-agent:test"
    subprocess.run(
        [DOCKER, "build", "-q", "-f", "deploy/Dockerfile", "-t", tag, "."],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    out = subprocess.run(
        [DOCKER, "run", "--rm", "--entrypoint", "sh", tag, "-c", "id -u; comet-agent --version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    assert out[0] == str(UID) and out[-1]
