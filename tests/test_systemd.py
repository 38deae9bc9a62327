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


def _unit_for_check(tmp_path: Path, name: str) -> Path:
    """A copy whose ExecStart points at the installed agent (verify checks the binary exists)."""
    text = (ROOT / "systemd" / name).read_text()
    text = text.replace("/opt/comet-agent/bin/comet-agent", agent_argv()[0])
    out = tmp_path / name.replace("@.", "@0123456789abcdef0123456789abcdef.")
    out.write_text(text)
    return out


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
def test_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    """systemd-analyze verify finds nothing wrong."""
    unit = _unit_for_check(tmp_path, name)
    result = subprocess.run(
        [ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,  # type: ignore[list-item]
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if unit.name in line or "comet-agent" in line
    ]
    # verify exits 0 even for unknown keys; what it prints about our unit is the verdict.
    assert problems == []
    assert result.returncode == 0


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_security_exposure_at_most_2(tmp_path: Path, name: str) -> None:
    """systemd-analyze security rates the unit 2.0 or lower (the issue's bar)."""
    unit = _unit_for_check(tmp_path, name)
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(unit)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for .*: (\d+\.\d+)", result.stdout)
    if found is None:
        pytest.skip(f"this systemd-analyze cannot rate unit files offline: {result.stderr[:200]}")
    assert float(found.group(1)) <= 2.0, result.stdout[-2000:]
