"""The facts sent once, assembled and sent to the Comet stand-in, which checks each one."""

from __future__ import annotations

import dataclasses
import io
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from agent.api import bodies
from agent.api.client import CometClient
from agent.collect import static
from agent.collect.base import Roots
from agent.collect.cloud import CloudInfo
from agent.collect.static import Target
from agent.config import Settings
from agent.lifecycle.facts import cloud_details_body, git_metadata_body
from tests.fakes.cloud_metadata import MetadataServer
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY

FIXTURES = Path(__file__).parent / "fixtures"
PLAIN = Roots.under(FIXTURES / "host-plain")
KEY = "0123456789abcdef0123456789abcdef"
GPU = {"gpu_index": 0, "name": "NVIDIA H100", "uuid": "GPU-1", "total_memory": 80 << 30,
       "power_limit": 700_000}  # fmt: skip


@pytest.fixture(name="client")
def _client(server: CometStandIn) -> CometClient:
    with CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=5) as client:
        yield client  # type: ignore[misc]


def test_system_details_on_the_plain_host(client: CometClient, server: CometStandIn) -> None:
    """Every field comes from the fixture host and the target's interpreter; Comet accepts it."""
    target = Target(command=["python", "train.py", "--lr", "0.1"], pid=4242, python=sys.executable)
    fields, notes = static.system_details(
        Settings(),
        target,
        comet_host=server.url,
        extra_info=[("cloud_instance_type", "p5.48xlarge"), ("odd", ["not", "scalar"])],
        gpu_static_info=[GPU],
        roots=PLAIN,
        env={},
    )
    body = bodies.system_details(**fields)
    assert notes == []
    assert body["command"] == ["python", "train.py", "--lr", "0.1"]
    assert body["pid"] == 4242
    assert body["env"] is None
    assert body["ip"] == "127.0.0.1"
    assert (body["executable"], body["pythonVersion"], body["pythonVersionVerbose"]) == (
        sys.executable,
        platform.python_version(),
        sys.version,
    )
    assert f"psutil=={metadata.version('psutil')}" in body["installedPackages"]
    assert body["osPackages"] == [
        "adduser=3.134",
        "ca-certificates=20230311+deb12u1",
        "libc6=2.36-9+deb12u14",
        "zlib1g=1:1.2.13.dfsg-1",
    ]
    assert "127.0.0.1" in body["networkInterfaceIps"]
    assert body["logAdditionalSystemInfoList"] == [
        {"key": "cpu_model", "value": "AMD EPYC"},
        {"key": "cpu_count_logical", "value": 2},
        {"key": "cpu_count_physical", "value": 2},
        {"key": "ram_total_bytes", "value": 33_554_432_000},
        {"key": "kernel", "value": "6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0"},
        {"key": "boot_time_ms", "value": 1_795_900_000_000},
        {"key": "os_distribution", "value": "Debian GNU/Linux 12 (bookworm)"},
        {"key": "container_runtime", "value": "none"},
        {"key": "python_source", "value": "target"},
        {"key": "cloud_instance_type", "value": "p5.48xlarge"},
        {"key": "odd", "value": "['not', 'scalar']"},
    ]
    assert body["gpuStaticInfoList"] == [GPU]
    assert set(body) == {
        "command", "env", "executable", "hostname", "ip", "machine", "os", "osRelease", "osType",
        "pid", "processor", "pythonVersion", "pythonVersionVerbose", "user", "installedPackages",
        "osPackages", "networkInterfaceIps", "logAdditionalSystemInfoList", "gpuStaticInfoList",
    }  # fmt: skip

    client.call("set-system-details", body, experiment_key=KEY)
    assert server.received("set-system-details")[0].body == {**body, "experimentKey": KEY}


def test_failing_facts_are_left_out_with_notes(
    client: CometClient, server: CometStandIn, tmp_path: Path
) -> None:
    """On an empty root every file-based fact is missing: each named in a note, none sent."""
    root = tmp_path / "empty"
    root.mkdir()
    fields, notes = static.system_details(
        Settings(), Target(["bash", "run.sh"], pid=1), roots=Roots.under(root), env={}
    )
    body = bodies.system_details(**fields)
    assert notes == [
        "python packages: bash is not a Python interpreter; listing the agent's own",
        f"cpu: {root}/proc/cpuinfo does not exist",
        f"ram_total_bytes: {root}/proc/meminfo does not exist",
        f"kernel: {root}/proc/sys/kernel/osrelease does not exist",
        f"boot_time_ms: {root}/proc/stat does not exist",
        f"os_distribution: neither {root}/etc/os-release nor {root}/usr/lib/os-release exists",
    ]
    assert body["logAdditionalSystemInfoList"] == [
        {"key": "container_runtime", "value": "none"},
        {"key": "python_source", "value": "agent"},
    ]
    assert body["osPackages"] == []
    assert body["executable"] == sys.executable
    assert "gpuStaticInfoList" not in body
    client.call("set-system-details", body, experiment_key=KEY)


def test_the_agent_as_its_own_target() -> None:
    """Watching nothing else, the agent describes itself without a subprocess or a note."""
    fields, notes = static.system_details(
        Settings(), Target.agent(), comet_host="127.0.0.1:9", roots=PLAIN, env={}
    )
    body = bodies.system_details(**fields)
    assert notes == []
    assert (body["command"], body["pid"], body["executable"]) == (
        sys.argv,
        os.getpid(),
        sys.executable,
    )
    assert {"key": "python_source", "value": "agent"} in body["logAdditionalSystemInfoList"]


@pytest.fixture(name="repo")
def _repo(tmp_path: Path, genv: dict[str, str]) -> Path:
    """A dirty repository with a token in its origin URL."""
    git = shutil.which("git") or pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "Probe User"],
        ["remote", "add", "origin", "https://bot:SECRET@example.com/acme/agent.git"],
        ["commit", "-q", "--allow-empty", "-m", "first"],
    ):
        subprocess.run([git, *args], cwd=repo, env=genv, check=True, capture_output=True)
    (repo / "train.py").write_text("print('hi')\n")
    subprocess.run([git, "add", "train.py"], cwd=repo, env=genv, check=True)
    return repo


def test_git_facts_are_accepted_by_comet(
    client: CometClient, server: CometStandIn, repo: Path, genv: dict[str, str]
) -> None:
    """Metadata and the zipped patch of [git] directory go through the stand-in's checks."""
    settings = dataclasses.replace(Settings(), git_directory=repo)
    facts = static.git_facts(settings, cwd=Path("/"), env=genv)
    assert facts.notes == []
    assert facts.metadata is not None
    metadata = git_metadata_body(facts.metadata)
    assert metadata["branch"] == "refs/heads/main"
    assert metadata["origin"] == "https://example.com/acme/agent.git"
    assert metadata["user"] == "Probe User"
    assert metadata["root"] == metadata["parent"]
    assert facts.patch is not None
    with zipfile.ZipFile(io.BytesIO(facts.patch)) as zf:
        assert b"+print('hi')" in zf.read("git_diff.patch")

    client.call("set-git-metadata", metadata, experiment_key=KEY)
    client.call("upload-git-patch", {}, experiment_key=KEY, file=facts.patch)
    assert len(server.received("upload-git-patch")) == 1


def test_git_switches(repo: Path, genv: dict[str, str]) -> None:
    """[git] metadata and patch each switch their part off."""
    base = dataclasses.replace(Settings(), git_directory=repo)
    no_patch = static.git_facts(dataclasses.replace(base, git_patch=False), Path("/"), genv)
    assert (no_patch.metadata is not None, no_patch.patch) == (True, None)
    no_meta = static.git_facts(dataclasses.replace(base, git_metadata=False), Path("/"), genv)
    assert (no_meta.metadata, no_meta.patch is not None) == (None, True)
    off = dataclasses.replace(base, git_metadata=False, git_patch=False)
    assert static.git_facts(off, Path("/"), genv) == static.GitFacts(None, None, [])


def test_git_outside_a_repository(tmp_path: Path, genv: dict[str, str]) -> None:
    """Outside a repository: nothing to send, one line to log."""
    facts = static.git_facts(Settings(), cwd=tmp_path, env=genv)
    assert facts == static.GitFacts(
        None, None, [f"{tmp_path} is not in a git repository; git facts are skipped"]
    )


def test_git_directory_missing(tmp_path: Path, genv: dict[str, str]) -> None:
    """A [git] directory that does not exist is named, with the setting to fix."""
    settings = dataclasses.replace(Settings(), git_directory=tmp_path / "gone")
    facts = static.git_facts(settings, cwd=tmp_path, env=genv)
    assert facts.notes == [f"git directory {tmp_path / 'gone'} does not exist; fix [git] directory"]


def test_oversize_patch_keeps_the_metadata(repo: Path, genv: dict[str, str]) -> None:
    """A patch over the cap is dropped with a note; the metadata still goes."""
    settings = dataclasses.replace(Settings(), git_directory=repo, patch_max_bytes=10)
    facts = static.git_facts(settings, Path("/"), genv)
    assert facts.metadata is not None
    assert facts.patch is None
    assert facts.notes[0].startswith("git: the patch is ")
    assert facts.notes[0].endswith(
        "bytes, over [git] patch_max_bytes (10); not sent. Raise patch_max_bytes to send it"
    )


def test_cloud_details_only_when_asked(client: CometClient, server: CometStandIn) -> None:
    """Off by default; on, the probe's body is accepted by Comet and its facts are scalars."""
    with MetadataServer("gcp") as meta:
        assert static.cloud_details(Settings(), base_url=meta.url) is None
        assert meta.seen == []
        found = static.cloud_details(
            dataclasses.replace(Settings(), cloud_probe=True), base_url=meta.url
        )
    assert found == CloudInfo("GCP", "a2-highgpu-8g", "us-central1", "us-central1-b")
    client.call("set-cloud-details", cloud_details_body(found), experiment_key=KEY)
    assert server.received("set-cloud-details")[0].body == {
        "experimentKey": KEY,
        "provider": "GCP",
        "metadata": {
            "instanceType": "a2-highgpu-8g",
            "region": "us-central1",
            "zone": "us-central1-b",
        },
    }
