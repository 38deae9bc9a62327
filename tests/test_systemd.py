"""The systemd units: valid, hardened to exposure 2.0 or lower, the key as a credential."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, agent_argv

UNITS = ["comet-agent.service", "comet-agent@.service"]
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _installed_root(tmp_path: Path) -> Path:
    """A root holding what systemd/README.md's install makes: the units as shipped, unchanged,
    in /etc/systemd/system and the agent at /opt/comet-agent/bin/comet-agent; systemd's own
    units are copied in so that verify finds the targets the units name."""
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(ROOT / "systemd" / name, units / name)
    binary = root / "opt" / "comet-agent" / "bin" / "comet-agent"
    binary.parent.mkdir(parents=True)
    shutil.copy(agent_argv()[0], binary)
    system = Path("/usr/lib/systemd/system")
    if system.is_dir():
        shutil.copytree(system, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    return root


def _instance(name: str) -> str:
    return name.replace("@.", "@0123456789abcdef0123456789abcdef.")


@pytest.mark.parametrize("name", UNITS)
def test_unit_essentials(name: str) -> None:
    """Type=notify, watchdog, credential, no key in the environment, exit 2 not restarted."""
    text = (ROOT / "systemd" / name).read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=60",
        "RestartPreventExitStatus=2",
        "LoadCredential=comet-api-key:/etc/comet-agent/api-key",
        "DeviceAllow=char-nvidia* rw",
    ):
        assert line in text
    assert "COMET_API_KEY" not in text
    assert "--api-key" not in text.replace("--api-key-file", "")


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_as_shipped(tmp_path: Path, name: str) -> None:
    """systemd-analyze verify finds nothing wrong with the unit as shipped, installed as
    systemd/README.md says (the ExecStart binary is what that install makes)."""
    root = _installed_root(tmp_path)
    result = subprocess.run(
        [ANALYZE, "verify", f"--root={root}", _instance(name)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "comet-agent" in line
    ]
    assert problems == []
    assert result.returncode == 0


@needs_analyze
def test_verify_fails_without_the_documented_install(tmp_path: Path) -> None:
    """The check above can fail: without the install's binary, verify names the ExecStart."""
    root = _installed_root(tmp_path)
    (root / "opt" / "comet-agent" / "bin" / "comet-agent").unlink()
    result = subprocess.run(
        [ANALYZE, "verify", f"--root={root}", "comet-agent.service"],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "/opt/comet-agent/bin/comet-agent is not executable" in result.stderr
    assert result.returncode != 0


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_security_exposure_at_most_2(tmp_path: Path, name: str) -> None:
    """systemd-analyze security rates the unit as shipped 2.0 or lower (the issue's bar)."""
    root = _installed_root(tmp_path)
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", f"--root={root}", _instance(name)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for .*: (\d+\.\d+)", result.stdout)
    if found is None:
        pytest.skip(f"this systemd-analyze cannot rate unit files offline: {result.stderr[:200]}")
    assert float(found.group(1)) <= 2.0, result.stdout[-2000:]
