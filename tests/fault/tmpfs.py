"""A small tmpfs for the disk-full tests: a real ENOSPC, skipped where mounting is not allowed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` (mount's syntax: 256k, 3m) at `mount`, unmount it afterwards."""
    mount_cmd, umount_cmd = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if mount_cmd is None or umount_cmd is None:
        pytest.skip("mount(8) is not installed")
    mount.mkdir(exist_ok=True)
    made = subprocess.run(
        [mount_cmd, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run([umount_cmd, "-l", str(mount)], check=False)
