"""sd_notify: real datagrams on a real socket, silent without systemd."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from agent.lifecycle.notify import sd_notify, watchdog_period_s


def test_sends_a_datagram_to_a_path_socket(tmp_path: Path) -> None:
    """With NOTIFY_SOCKET set, the message arrives as one datagram."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert sd_notify("READY=1\nSTATUS=attached", {"NOTIFY_SOCKET": str(path)}) is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=attached"


def test_abstract_socket(tmp_path: Path) -> None:
    """A leading @ names an abstract socket."""
    name = f"comet-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(100) == b"WATCHDOG=1"


def test_no_socket_is_not_an_error(tmp_path: Path) -> None:
    """Outside systemd, or with a dead socket, sd_notify returns False."""
    assert sd_notify("READY=1", {}) is False
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": "relative"}) is False


def test_watchdog_period_is_half_the_timeout() -> None:
    """WATCHDOG_USEC=60 s → ping every 30 s; another process's watchdog is not ours."""
    assert watchdog_period_s({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_period_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "x"}) is None
    assert watchdog_period_s({}) is None
