"""What the daemon watches besides signals: a process that must live, a file that must not exist."""

from __future__ import annotations

from pathlib import Path


def start_time(pid: int | None) -> float | None:
    """The start time of `pid` (to tell it from a later process given the same pid), or None."""
    if pid is None:
        return None
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - psutil raises several kinds; any means "not there"
        return None


def alive(pid: int, started: float | None) -> bool:
    """Whether `pid` is still the process that started at `started` (any, when None)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        # A recycled pid is another process: compare the start time.
        return started is None or proc.create_time() == started
    except Exception:  # noqa: BLE001
        return False


def exit_condition(spec: str) -> bool:
    """``--exit-with``: a pid that has exited, or a file that has appeared."""
    if spec.isdigit():
        return not alive(int(spec), None)
    return Path(spec).exists()


def command_of(pid: int | None) -> list[str] | None:
    """The command line of `pid`, as Set System Details' ``command``."""
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None
