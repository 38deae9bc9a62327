"""``comet-agent doctor``: check the set-up, one line per check, each problem with its fix.

Checks, in order: the configuration, the API key (its source, never its
value), the server (reachable, round trip, a harmless authenticated read,
the clock against the server's ``Date`` header), TLS settings, NVML, cgroup
limits, git, the state and offline directories (mode, owner, space), the
outbox (read-only: opening it as the ``Outbox`` class would release a running
agent's leases), the agent running there (its status snapshot), and systemd's
socket and credential. Without an API key the
agent runs offline, so the server checks are skipped with a note.

Exit status: 0 when no check failed (warnings allowed), 1 when one did; a bad
flag or configuration is 2, as for every command (``cli.main``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from agent.collect.base import Roots
from agent.config import Settings
from agent.doctor import local, server
from agent.doctor.check import FAIL, Check, render


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run every check, print them; return 1 when any failed, else 0."""
    checks = run_checks(settings)
    failed = any(c.status == FAIL for c in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render(checks))
    return 1 if failed else 0


def run_checks(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    roots: Roots = Roots(),
    gpu_lib: object = None,
    cwd: Path | None = None,
) -> list[Check]:
    """Return every check's verdict; `gpu_lib` is the pynvml module (tests pass the fake)."""
    env = os.environ if environ is None else environ
    return [
        server.config_check(settings),
        server.key_check(settings),
        *server.server_checks(settings),
        server.tls_check(settings),
        local.gpu_check(settings, gpu_lib, env),
        local.cgroup_check(roots),
        local.git_check(settings, cwd or Path.cwd()),
        local.directory_check(
            "state-dir",
            settings.state_directory,
            "--state-dir or [agent] state_directory",
            settings.outbox_max_bytes,
        ),
        local.directory_check(
            "offline-dir", settings.offline_directory, "[comet] offline_directory", 0
        ),
        local.outbox_check(settings.state_directory),
        local.agent_check(settings.state_directory),
        local.systemd_check(settings, env),
    ]
