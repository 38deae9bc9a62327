"""systemd's notify protocol, written directly on the socket (it is a few lines).

``sd_notify("READY=1")`` sends one datagram to ``$NOTIFY_SOCKET`` (a leading
``@`` names an abstract socket) and returns False when there is no socket, so
the same code runs under systemd, in a container and in a terminal. The
python-systemd binding needs libsystemd headers to build and sdnotify is
unmaintained since 2017; neither does more than these lines.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def sd_notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `message` (e.g. ``READY=1``, ``STATUS=...``) to systemd; return whether it went."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address or address[0] not in ("/", "@"):
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode("utf-8", errors="replace"))
    except OSError:
        return False
    return True


def watchdog_period_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Return how often to send ``WATCHDOG=1`` (half of ``WatchdogSec``), or None when off."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None
