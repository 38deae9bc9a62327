"""The command line: ``main(argv) -> int``.

Exit codes: 0 success (a clean stop on SIGTERM/SIGINT included), 1 runtime
failure, 2 usage or configuration error; ``run`` returns the command's own
status. Each subcommand's handler is imported only when it runs, so
``comet-agent run`` starts fast and ``--help`` needs none of the heavy imports.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__

if TYPE_CHECKING:
    from agent.config import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]
# Plain help: each option's text says its default where it has one that matters (argparse's
# defaults formatter added "(default: None)" after texts that already said "(default 30)").
_FMT = argparse.HelpFormatter
_UNKNOWN_OPTION = re.compile(r"unrecognized arguments: (?P<args>.*)")
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")


class _Parser(argparse.ArgumentParser):
    """argparse that says what to do in one line, exit status 2, like the rest of the agent."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"comet-agent: {_suggest(message, self)}; see '{self.prog} --help'\n")


def _suggest(message: str, parser: argparse.ArgumentParser) -> str:
    """Add "did you mean X?" to an invalid choice or an unknown option when one is close."""
    unknown = _UNKNOWN_OPTION.search(message)
    if unknown is not None:
        options = sorted({o for a in _actions(parser) for o in a.option_strings})
        for word in unknown["args"].split():
            name = word.split("=", 1)[0]
            close = difflib.get_close_matches(name, options, n=1, cutoff=0.7)
            if name.startswith("--") and close:
                return f"{message}; did you mean '{close[0]}'?"
        return message
    found = _INVALID_CHOICE.search(message)
    if found is None:
        return message
    choices = re.findall(r"'([^']*)'", found["choices"])
    close = difflib.get_close_matches(found["value"], choices, n=1, cutoff=0.6)
    prefixed = [c for c in choices if c.startswith(found["value"])] if found["value"] else []
    best = prefixed[0] if len(prefixed) == 1 else (close[0] if close else None)
    return f"{message}; did you mean '{best}'?" if best else message


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
        "--host-root",
        metavar="DIR",
        help="the host's / mounted at DIR: sample the node, not this container",
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
    group.add_argument(
        "--workspace",
        help="workspace of a new experiment ($COMET_WORKSPACE; default: the API key's default)",
    )
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
        "agent.commands.run:command",
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
        "--leave-sdk-alone",
        dest="quiet_sdk",
        action="store_false",
        default=None,
        help="do not switch off a comet_ml SDK's own output, system and git logging in the "
        "command (then both send them)",
    )
    run.add_argument(
        "argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]", help="the command to run"
    )
    _common(run)

    start = add(
        "start",
        "agent.commands.start:command",
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
        "agent.commands.inspect:sysinfo",
        "print the static facts that Set System Details would send",
    )
    sysinfo.add_argument("--json", action="store_true", help="print JSON")
    _common(sysinfo)

    sample = add(
        "sample", "agent.commands.inspect:sample", "take one sample of every metric and print it"
    )
    sample.add_argument("--json", action="store_true", help="print JSON")
    _common(sample)

    api = add("api", "agent.commands.api:command", "call any Comet write endpoint")
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
        help="path after the base, for endpoints whose path docs/comet-wire.md leaves unknown",
    )
    api.add_argument(
        "--dry-run",
        action="store_true",
        help="print the request that would be sent, the API key masked",
    )
    _common(api)

    upload = add(
        "upload",
        "agent.commands.upload:command",
        "send offline archives (files or directories of them) to Comet",
    )
    upload.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="archives or directories (default: the offline directory)",
    )
    upload.add_argument("--dry-run", action="store_true", help="read and count, send nothing")
    # The SDK's `comet upload` spellings work too: --project-name, --force-upload, --force-reupload.
    upload.add_argument(
        "--workspace", metavar="W", help="workspace to upload into instead of the archive's own"
    )
    upload.add_argument(
        "--project",
        "--project-name",
        dest="project_name",
        metavar="P",
        help="project to upload into instead of the archive's own",
    )
    upload.add_argument(
        "--force-upload",
        "--force-reupload",
        dest="force_upload",
        action="store_true",
        help="send an archive already uploaded again, as a new experiment",
    )
    _common(upload)

    status = add(
        "status",
        "agent.commands.status:command",
        "show the agent's experiment, intervals, backlog and health",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    _common(status)

    retry = add("retry", "agent.commands.status:retry_command", "send the dead letters again")
    _common(retry)

    report = add(
        "report", "agent.commands.report:command", "draw a run as a self-contained HTML page"
    )
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

    top = add(
        "top",
        "agent.commands.top:command",
        "show the current sample, redrawn in place (a terminal)",
    )
    top.add_argument("--pid", type=int, metavar="PID", help="also show this process tree")
    top.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="seconds between redraws (2)"
    )
    top.add_argument(
        "-n", "--iterations", type=int, default=0, metavar="N", help="stop after N screens"
    )
    _common(top)

    doctor = add(
        "doctor", "agent.commands.doctor:command", "check the set-up and say how to fix it"
    )
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


def _more_fields(args: argparse.Namespace, extra: list[str]) -> bool:
    """Whether the leftover arguments are FIELD=VALUE pairs for `api NAME`."""
    if not getattr(args, "endpoint", None) or not isinstance(getattr(args, "fields", None), list):
        return False
    return all("=" in arg and not arg.startswith("-") for arg in extra)


# The commands that sample for a long time; offline, they never open a connection.
_DAEMONS = frozenset({"agent.commands.start:command", "agent.commands.run:command"})


def _keep_out_tls() -> None:
    """An offline daemon never speaks TLS: keep asyncio (structlog imports it) from loading
    ssl, whose OpenSSL libraries are ~3 MB of the daemon's memory for its whole life.

    asyncio, urllib.request and http.client import ssl in a try and go on without it;
    offline is for good (a run may fall back from online to offline, never back), so
    nothing in this process would use it. Python refuses a module whose sys.modules
    entry is None; one imported already is left alone.
    """
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comet-agent command line and return the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and _more_fields(args, extra):
        # `api NAME --experiment-key K f=v`: argparse ends NAME's fields at the first option
        args.fields += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2

    from agent import log
    from agent.config import load_settings
    from agent.errors import AgentError, ConfigError, UsageError

    if argv is None:  # the comet-agent process itself, not a caller in its own process
        log.keep_out_unused_renderers()

    try:
        settings = load_settings(
            flags=_flags(args), config_path=_path(getattr(args, "config", None))
        )
    except ConfigError as exc:
        print(f"comet-agent: {_typed_flag(str(exc), parser, argv)}", file=sys.stderr)
        return 2
    log.add_secret(settings.api_key)
    log.configure(settings.log_level, settings.log_format)
    if argv is None and settings.offline and args.handler in _DAEMONS:
        _keep_out_tls()
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


def _typed_flag(message: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> str:
    """Name the flag as the user typed it: config names it after the setting (--cpu-interval-s)."""
    typed = {arg.split("=", 1)[0] for arg in (sys.argv[1:] if argv is None else argv)}
    for action in _actions(parser):
        setting_flag = f"--{action.dest.replace('_', '-')}"
        spelled = [o for o in action.option_strings if o in typed]
        if spelled and setting_flag not in action.option_strings:
            message = message.replace(f"({setting_flag})", f"({spelled[0]})")
    return message


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _actions(sub)
    return found


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
