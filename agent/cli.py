"""The command line: ``main(argv) -> int``.

Exit codes: 0 success (a clean stop on SIGTERM/SIGINT included), 1 runtime
failure, 2 usage or configuration error; ``run`` returns the command's own
status. Each subcommand's handler is imported only when it runs, so
``comet-agent run`` starts fast and ``--help`` needs none of the heavy imports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__

if TYPE_CHECKING:
    from agent.config import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]
_FMT = argparse.ArgumentDefaultsHelpFormatter


class _Parser(argparse.ArgumentParser):
    """argparse that says what to do in one line, exit status 2, like the rest of the agent."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"comet-agent: {message}; see '{self.prog} --help'\n")


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument("--config", metavar="PATH", help="TOML config file ($COMET_AGENT_CONFIG)")
    group.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="file holding the API key (there is no --api-key: argv is public)",
    )
    group.add_argument("--url-override", metavar="URL", help="Comet server ($COMET_URL_OVERRIDE)")
    group.add_argument(
        "--state-dir", dest="state_directory", metavar="DIR", help="outbox and state directory"
    )
    group.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log level (default from config: info)",
    )
    group.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        help="log format (auto: console on a terminal, JSON elsewhere)",
    )


def _experiment(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("experiment")
    group.add_argument(
        "--experiment-key", metavar="KEY", help="attach to this experiment ($COMET_EXPERIMENT_KEY)"
    )
    group.add_argument("--workspace", help="workspace of a new experiment ($COMET_WORKSPACE)")
    group.add_argument(
        "--project", dest="project_name", help="project of a new experiment ($COMET_PROJECT_NAME)"
    )
    group.add_argument("--name", dest="experiment_name", help="name of a new experiment")
    group.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="write an offline archive instead of sending",
    )
    group.add_argument(
        "--local-copy",
        dest="local_copy",
        action="store_true",
        default=None,
        help="online: also keep an archive of what is sent, for `comet-agent report`",
    )
    group.add_argument(
        "--cpu-interval",
        dest="cpu_interval_s",
        type=float,
        metavar="S",
        help="CPU/RAM/load sampling interval; overrides the server's (default 30)",
    )
    group.add_argument(
        "--gpu-interval",
        dest="gpu_interval_s",
        type=float,
        metavar="S",
        help="GPU sampling interval; overrides the server's (default 30)",
    )
    group.add_argument(
        "--stop-timeout",
        dest="stop_timeout_s",
        type=float,
        metavar="S",
        help="on stop, how long to keep sending what is queued (default 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every subcommand."""
    parser = _Parser(
        prog="comet-agent",
        formatter_class=_FMT,
        description="System-monitoring agent for experiments tracked in Comet.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"comet-agent {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, handler: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_FMT)
        cmd.set_defaults(handler=handler)
        return cmd

    run = add(
        "run",
        "agent.wrap:command",
        "run a command and monitor it: its output, its exit and the machine",
    )
    _experiment(run)
    run.add_argument("--pty", action="store_true", help="give the command a pseudo-terminal")
    run.add_argument(
        "--no-capture",
        dest="capture_output",
        action="store_false",
        default=None,
        help="do not send the command's output to Comet",
    )
    run.add_argument(
        "argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]", help="the command to run"
    )
    _common(run)

    start = add(
        "start",
        "agent.start:command",
        "attach to an experiment and sample until stopped (the daemon)",
    )
    _experiment(start)
    start.add_argument(
        "--watch-pid",
        type=int,
        metavar="PID",
        help="stop when this process exits, and sample its process tree",
    )
    start.add_argument(
        "--experiment-key-file",
        metavar="PATH",
        help="sidecar: read the key from this file (waiting for it), or write "
        "the key of the experiment created to it",
    )
    start.add_argument(
        "--exit-with",
        metavar="PATH|PID",
        help="sidecar: stop when this process exits or this file appears",
    )
    _common(start)

    sysinfo = add(
        "sysinfo",
        "agent.commands:sysinfo",
        "print the static facts that Set System Details would send",
    )
    sysinfo.add_argument("--json", action="store_true", help="print JSON")
    _common(sysinfo)

    sample = add("sample", "agent.commands:sample", "take one sample of every metric and print it")
    sample.add_argument("--json", action="store_true", help="print JSON")
    _common(sample)

    api = add("api", "agent.api.command:command", "call any Comet write endpoint")
    api.add_argument("--list", action="store_true", help="list every endpoint")
    api.add_argument("--json", action="store_true", help="with --list: print JSON")
    api.add_argument("endpoint", nargs="?", metavar="NAME", help="endpoint name, from --list")
    api.add_argument("fields", nargs="*", metavar="FIELD=VALUE", help="body or query fields")
    api.add_argument("--body", metavar="JSON|@FILE", help="the whole body as JSON, or @file")
    api.add_argument(
        "--experiment-key",
        metavar="KEY",
        help="experiment key, for endpoints that take one ($COMET_EXPERIMENT_KEY)",
    )
    api.add_argument("--file", dest="upload", metavar="PATH", help="file to upload (multipart)")
    api.add_argument(
        "--path",
        dest="endpoint_path",
        metavar="PATH",
        help="path after the base, for endpoints whose path SPEC.md leaves unknown",
    )
    api.add_argument(
        "--dry-run",
        action="store_true",
        help="print the request that would be sent, the API key masked",
    )
    _common(api)

    upload = add(
        "upload",
        "agent.upload:command",
        "send offline archives (files or directories of them) to Comet",
    )
    upload.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="archives or directories (default: the offline directory)",
    )
    upload.add_argument("--dry-run", action="store_true", help="read and count, send nothing")
    upload.add_argument("--workspace", help="workspace to upload into")
    upload.add_argument("--project", dest="project_name", help="project to upload into")
    _common(upload)

    status = add(
        "status",
        "agent.status:command",
        "show the agent's experiment, intervals, backlog and health",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    _common(status)

    retry = add("retry", "agent.status:retry_command", "send the dead letters again")
    _common(retry)

    report = add("report", "agent.report:command", "draw a run as a self-contained HTML page")
    report.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="an archive, or a state directory whose agent keeps one (default: the newest)",
    )
    report.add_argument("-o", "--output", metavar="FILE", help="output file (default: report.html)")
    report.add_argument(
        "--png", action="store_true", help="write a PNG instead (needs the png extra)"
    )
    _common(report)

    doctor = add("doctor", "agent.doctor:command", "check the set-up and say how to fix it")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    _common(doctor)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, object]:
    """Pick the parsed options that are also settings (same attribute name)."""
    from agent.config import Settings

    names = {f.name for f in fields(Settings)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _resolve(spec: str) -> Handler:
    module, _, name = spec.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comet-agent command line and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2

    from agent import log
    from agent.config import load_settings
    from agent.errors import AgentError, ConfigError, UsageError

    try:
        settings = load_settings(
            flags=_flags(args), config_path=_path(getattr(args, "config", None))
        )
    except ConfigError as exc:
        print(f"comet-agent: {exc}", file=sys.stderr)
        return 2
    log.add_secret(settings.api_key)
    log.configure(settings.log_level, settings.log_format)
    try:
        return _resolve(args.handler)(args, settings)
    except (ConfigError, UsageError) as exc:
        print(f"comet-agent: {log.redact(str(exc))}", file=sys.stderr)
        return 2
    except AgentError as exc:
        print(f"comet-agent: {log.redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `comet-agent api --list | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("COMET_AGENT_DEBUG"):
            raise
        log.get_logger().exception("agent.crashed", error=log.redact(str(exc)))
        print(
            f"comet-agent: unexpected error: {log.redact(repr(exc))}; please report it with "
            "the log above (COMET_AGENT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
