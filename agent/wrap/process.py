"""The run wrapper's process side: spawn the command, tee its output, forward signals, exit code.

No shell is ever involved: the command is an argv list, exec'd directly
(``PATH`` from the child's environment). The child runs in a session and
process group of its own, with stdin inherited, so a terminal's Ctrl-C
reaches the wrapper only, which forwards it to the child's whole group
(grandchildren such as data-loader workers included) exactly once. A second
Ctrl-C or SIGTERM is forwarded too and nothing more: the command decides
when to stop, and ``kill -9`` on the wrapper remains the way out.

Output goes through pipes (or, with ``use_pty``, one pseudo-terminal for
both stdout and stderr, so the command sees a terminal). Two reader threads
write each chunk to the wrapper's own stdout/stderr unchanged and at once,
then give it to ``on_output`` (the Log Output capture), which cannot stop
the passthrough: if it raises, the error is logged once and output still
flows. If the wrapper's stdout is closed (``| head``), reading that stream
stops too, so the command gets SIGPIPE as it would without the wrapper.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, BinaryIO

from agent.errors import AgentError, UsageError
from agent.lifecycle.ending import ChildExit
from agent.lifecycle.hardening import CoreLimit, restored_for_child

if TYPE_CHECKING:
    from agent.config import Settings

OnOutput = Callable[[bytes, bool], None]
_Handler = Callable[[int, FrameType | None], object] | int | None
CHUNK_BYTES = 64 * 1024
PR_SET_PDEATHSIG = 1  # linux/prctl.h
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# The child must not talk to systemd as us (sd_notify, watchdog) nor take our sockets.
SYSTEMD_VARIABLES = frozenset(
    {"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}
)


# The SDK's own switches (comet_ml config/config_map.py, read by experiment.py
# Experiment.__init__): what the agent already sends, the SDK is told to leave out. Values as
# the SDK parses them (everett parse_bool; the output logger takes "" for none: the word "false"
# is no logger name and falls back to "simple" capture, which would send every line twice).
QUIET_SDK: Mapping[str, str] = {
    "COMET_AUTO_LOG_OUTPUT_LOGGER": "",
    "COMET_AUTO_LOG_ENV_DETAILS": "false",
    "COMET_AUTO_LOG_ENV_HOST": "false",
    "COMET_AUTO_LOG_ENV_CPU": "false",
    "COMET_AUTO_LOG_ENV_GPU": "false",
    "COMET_AUTO_LOG_ENV_NETWORK": "false",
    "COMET_AUTO_LOG_ENV_DISK": "false",
    "COMET_AUTO_LOG_GIT_METADATA": "false",
    "COMET_AUTO_LOG_GIT_PATCH": "false",
}


def child_env(
    base: Mapping[str, str],
    settings: Settings,
    experiment_key: str | None,
    *,
    offline: bool = False,
) -> dict[str, str]:
    """Return the command's environment: `base`, so a comet_ml SDK in it logs to our experiment.

    Added or replaced: ``COMET_EXPERIMENT_KEY`` (when a key is given); online,
    ``COMET_URL_OVERRIDE`` (the experiment lives on that server), ``COMET_WORKSPACE`` and
    ``COMET_PROJECT_NAME`` (when set); offline, ``COMET_START_ONLINE=false`` (so
    ``comet_ml.start()`` records offline too) and ``COMET_OFFLINE_DIRECTORY`` (next to our
    archive). With ``[agent] quiet_sdk`` the SDK switches in ``QUIET_SDK`` that `base` does
    not set already. With a key, ``agent/sdk_hook`` goes first on ``PYTHONPATH`` and
    ``COMET_AGENT_SDK_KEY`` names the key, so every SDK entry point joins the experiment.
    Removed: ``NOTIFY_SOCKET``, ``WATCHDOG_*`` and ``LISTEN_*``. The API key is never added:
    ``COMET_API_KEY`` reaches the command only if it is already in `base`.
    """
    from agent.config import option

    env = {k: v for k, v in base.items() if k not in SYSTEMD_VARIABLES}
    passed: dict[str, object] = {"experiment_key": experiment_key}
    if offline:
        passed["offline_directory"] = str(settings.offline_directory)
        env.setdefault("COMET_START_ONLINE", "false")
    else:
        passed.update(
            url_override=settings.url_override,
            workspace=settings.workspace,
            project_name=settings.project_name,
        )
    for field, value in passed.items():
        if value:
            env[option(field).env_name] = str(value)
    if settings.quiet_sdk:
        for name, value in QUIET_SDK.items():
            env.setdefault(name, value)  # a switch the user set is theirs
    if experiment_key:
        # agent/sdk_hook: an SDK in the command gets-or-creates this key instead of being
        # refused because the agent made the experiment first.
        hook = str(Path(__file__).with_name("sdk_hook"))
        env["COMET_AGENT_SDK_KEY"] = experiment_key
        if offline:
            env["COMET_AGENT_SDK_OFFLINE"] = "1"  # Experiment() records offline too
        env["PYTHONPATH"] = os.pathsep.join(p for p in (hook, env.get("PYTHONPATH")) if p)
    return env


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    use_pty: bool = False,
    on_output: OnOutput | None = None,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
    on_start: Callable[[int], None] | None = None,
    oom_kill_count: Callable[[], int | None] | None = None,
    eof_timeout_s: float = 2.0,
    core_limit: CoreLimit | None = None,
) -> ChildExit:
    """Run `argv` to its end, teeing its output; return how it ended.

    `stdout`/`stderr` default to the wrapper's own. Signal forwarding needs
    the main thread (elsewhere the child gets no forwarded signals). After
    the command exits, output is read for up to `eof_timeout_s` more while
    a process it left behind still holds the pipe. A command that cannot
    start gets one line on `stderr`, as a shell would, and exit 127 or 126.
    """
    if not argv:
        raise UsageError("no command to run; put it after --: comet-agent run -- python train.py")
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer
    with _forwarding(use_pty) as forward:
        begun = time.monotonic()
        try:
            with restored_for_child(core_limit):
                proc, streams = _spawn(argv, env, use_pty, out, err)
        except OSError as exc:
            code, message = _start_error(argv[0], exc, env)
            _say(err, message)
            return ChildExit(code, None, 0.0, None, error=message, started=False)
        forward.attach(proc.pid, (streams[0][0], out) if use_pty else None)
        # The cgroup's OOM count to compare with at the end, read just after the spawn: the
        # command must not wait for it, and nothing is OOM-killed in its first milliseconds.
        before = _oom_count(oom_kill_count)
        stop_r, stop_w = os.pipe()
        readers = [
            threading.Thread(
                target=_pump,
                args=(fd, sink, is_stderr, on_output, stop_r),
                name=f"run-{'stderr' if is_stderr else 'stdout'}",
                daemon=True,
            )
            for fd, sink, is_stderr in streams
        ]
        for reader in readers:
            reader.start()
        if on_start is not None:
            _call_hook(on_start, proc.pid)
        returncode = proc.wait()
        wall_s = time.monotonic() - begun
        deadline = time.monotonic() + eof_timeout_s
        for reader in readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        os.write(stop_w, b"x")  # a leftover grandchild holds the pipe: stop reading it
        for reader in readers:
            reader.join()
        for fd in (stop_r, stop_w, *(s[0] for s in streams)):
            os.close(fd)
    killed_by = -returncode if returncode < 0 else None
    exit_code = 128 + killed_by if killed_by is not None else returncode
    after = _oom_count(oom_kill_count)
    oom_kills = after - before if after is not None and before is not None else None
    oom_killed = None
    if oom_kills is not None:  # SIGKILL, or a shell in between that reports one (137)
        oom_killed = oom_kills > 0 and exit_code == 128 + signal.SIGKILL
    return ChildExit(exit_code, killed_by, wall_s, oom_killed, oom_kills=oom_kills)


def _spawn(
    argv: Sequence[str], env: Mapping[str, str], use_pty: bool, out: BinaryIO, err: BinaryIO
) -> tuple[subprocess.Popen[bytes], list[tuple[int, BinaryIO, bool]]]:
    """Start the child; return it and its (fd, our sink, is_stderr) streams, fds ours to close."""
    if use_pty:
        master, slave = os.openpty()
        _terminal_setup(slave, out)
        ours, theirs = [master], [slave, slave]
    else:
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()  # close-on-exec: not inherited
        for fd in (out_w, err_w):
            _widen(fd)
        ours, theirs = [out_r, err_r], [out_w, err_w]
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=theirs[0],
            stderr=theirs[1],
            env=dict(env),
            start_new_session=True,  # own group for forwarding; no terminal job control (SIGTTIN)
            close_fds=True,
            preexec_fn=_die_with(os.getpid()),  # prctl and getppid only: fork-safe
        )
    except OSError:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in set(theirs):
            os.close(fd)  # the child's copies alone keep them open, so its exit brings EOF
    if use_pty:
        return proc, [(ours[0], out, False)]
    return proc, [(ours[0], out, False), (ours[1], err, True)]


def _die_with(parent: int) -> Callable[[], None]:
    """In the child before exec: SIGKILL it when the wrapper dies (``kill -9`` included), so a
    command never runs on unwatched under PID 1 (Linux ``prctl(PR_SET_PDEATHSIG)``)."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal to ask for
        return lambda: None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the wrapper died between fork and prctl
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


def _widen(fd: int) -> None:
    """Let a burst of output wait in a 1 MiB pipe instead of blocking the child at 64 KiB."""
    with suppress(OSError):  # over the per-user pipe budget: the default size still works
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)


def _terminal_setup(slave: int, out: BinaryIO) -> None:
    """Keep the child's bytes as written ("\\n", not "\\r\\n") and give it our window size."""
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # oflag: our own terminal, if any, adds the "\r"
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    _copy_window_size(out, slave)


def _copy_window_size(out: BinaryIO, fd: int) -> None:
    # Not a terminal, or no fileno: the default 0x0 stays.
    with suppress(OSError, ValueError):
        size = fcntl.ioctl(out.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)


def _pump(fd: int, sink: BinaryIO, is_stderr: bool, on_output: OnOutput | None, stop: int) -> None:
    """Copy fd to sink, then to on_output, chunk by chunk; return at EOF or once `stop` is set."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(stop, select.POLLIN)
    complained = False
    while True:
        if any(ready == stop for ready, _ in poller.poll()):
            return
        try:
            chunk = os.read(fd, CHUNK_BYTES)
        except OSError as exc:
            if exc.errno == errno.EIO:  # a pty whose last writer has gone: its EOF
                return
            raise
        if not chunk:
            return
        try:
            sink.write(chunk)
            sink.flush()
        except BrokenPipeError:
            return  # our reader left: stop reading, so the child gets SIGPIPE as without us
        if on_output is None:
            continue
        try:
            on_output(chunk, is_stderr)
        except Exception as exc:  # noqa: BLE001 - capture must never stop the passthrough
            if not complained:
                complained = True
                from agent import log

                log.get_logger().warning("run.capture_failed", error=repr(exc))


class _Forwarder:
    """Signal handlers that pass SIGINT, SIGTERM, SIGHUP and SIGQUIT to the child's group."""

    def __init__(self) -> None:
        self._group: int | None = None
        self._pty: tuple[int, BinaryIO] | None = None
        self._early: list[int] = []

    def attach(self, group: int, pty: tuple[int, BinaryIO] | None) -> None:
        """Start forwarding to `group`, first the signals that came while it was starting."""
        self._group, self._pty = group, pty
        for signum in self._early:
            self.handle(signum, None)

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        """Forward one signal (a handler: runs in the main thread between bytecodes)."""
        if self._group is None:
            self._early.append(signum)
            return
        if signum == signal.SIGWINCH and self._pty is not None:
            _copy_window_size(self._pty[1], self._pty[0])
        with suppress(ProcessLookupError):  # the whole group has exited
            os.killpg(self._group, signum)


@contextmanager
def _forwarding(use_pty: bool) -> Iterator[_Forwarder]:
    """Install the forwarding handlers for the block, then restore the previous ones."""
    forwarder = _Forwarder()
    saved: dict[signal.Signals, _Handler] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (*FORWARDED, signal.SIGWINCH) if use_pty else FORWARDED:
            saved[signum] = signal.signal(signum, forwarder.handle)
    try:
        yield forwarder
    finally:
        for signum, previous in saved.items():
            if previous is not None:  # None: set outside Python; cannot be put back
                signal.signal(signum, previous)


def _start_error(command: str, exc: OSError, env: Mapping[str, str]) -> tuple[int, str]:
    """Return the shell's exit status and message for a command that could not start."""
    if isinstance(exc, FileNotFoundError):
        if "/" in command:
            exists = os.path.exists(command)
        else:
            import shutil

            exists = shutil.which(command, path=env.get("PATH", os.defpath)) is not None
            if not exists:
                return 127, f"comet-agent: {command}: command not found"
        if exists:  # the file is there: its #! interpreter is not
            return 126, f"comet-agent: {command}: bad interpreter: No such file or directory"
        return 127, f"comet-agent: {command}: No such file or directory"
    if isinstance(exc, PermissionError | IsADirectoryError):
        return 126, f"comet-agent: {command}: Permission denied"
    return 126, f"comet-agent: {command}: cannot execute: {exc.strerror or exc}"


def _say(stream: BinaryIO, message: str) -> None:
    with suppress(OSError):
        stream.write(message.encode() + b"\n")
        stream.flush()


def _call_hook(hook: Callable[[int], None], pid: int) -> None:
    try:
        hook(pid)
    except Exception as exc:  # noqa: BLE001 - monitoring trouble must not orphan a running command
        from agent import log

        log.get_logger().warning("run.on_start_failed", error=repr(exc))


def _oom_count(read: Callable[[], int | None] | None) -> int | None:
    if read is None:
        return None
    try:
        return read()
    except (OSError, AgentError):
        return None
