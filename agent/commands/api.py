"""``comet-agent api``: list every endpoint, or call one from a shell or a script."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from agent.api.endpoints import ENDPOINTS, Endpoint, KeyIn, check_type
from agent.config import Settings
from agent.errors import UsageError


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``comet-agent api`` and return the exit status."""
    if args.list:
        _print_list(as_json=args.json)
        return 0
    if not args.endpoint:
        raise UsageError("name an endpoint (comet-agent api --list shows them) or pass --list")
    endpoint = ENDPOINTS.get(args.endpoint)
    if endpoint is None:
        close = [name for name in ENDPOINTS if args.endpoint in name or name in args.endpoint]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"unknown endpoint {args.endpoint!r}{hint}; comet-agent api --list shows them all"
        )
    body = build_body(endpoint, args.body, args.fields)
    key = args.experiment_key or settings.experiment_key
    if endpoint.key_in is not KeyIn.NONE and not key:
        raise UsageError(
            f"{endpoint.name} needs an experiment key; pass --experiment-key or set "
            "COMET_EXPERIMENT_KEY"
        )
    upload = _read_upload(args.upload) if args.upload else None

    from agent.api.client import CometClient

    with CometClient.from_settings(settings) as client:
        prepared = client.prepare(
            endpoint, body, experiment_key=key, file=upload, path=args.endpoint_path
        )
        if args.dry_run:
            print(json.dumps(prepared.masked(), indent=2))
            return 0
        if not settings.api_key:
            raise UsageError(
                "no API key: set COMET_API_KEY, --api-key-file or the "
                "comet-api-key credential (or use --dry-run)"
            )
        answer = client.send(prepared)
    print(json.dumps(answer, indent=2))
    return 0


def build_body(
    endpoint: Endpoint, body_arg: str | None, field_args: list[str]
) -> dict[str, object]:
    """Merge ``--body`` and ``FIELD=VALUE`` arguments into a checked body."""
    body: dict[str, object] = {}
    if body_arg is not None:
        text = _read_text(body_arg[1:]) if body_arg.startswith("@") else body_arg
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"--body is not JSON ({exc.msg} at line {exc.lineno} column "
                f'{exc.colno}); quote it like --body \'{{"key": "value"}}\''
            ) from None
        except (RecursionError, ValueError) as exc:  # nested too deep; a number too long
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise UsageError(
                f"--body cannot be read as JSON ({why}); send a flatter body"
            ) from None
        if not isinstance(parsed, dict):
            raise UsageError('--body must be a JSON object, like {"key": "value"}')
        body.update(parsed)
    known = endpoint.fields()
    for arg in field_args:
        name, eq, text = arg.partition("=")
        if not eq or not name:
            raise UsageError(
                f"{arg!r} is not FIELD=VALUE; fields of {endpoint.name}: {_names(known)}"
            )
        if name not in known and name != "experimentKey":
            raise UsageError(f"{endpoint.name} has no field {name!r}; its fields: {_names(known)}")
        body[name] = parse_value(name, text, known.get(name, "str"))
    missing = [name for name in endpoint.required if name not in body]
    if missing:
        raise UsageError(f"{endpoint.name} needs {', '.join(missing)}; pass NAME=VALUE or --body")
    for name, value in body.items():
        type_name = known.get(name)
        if type_name and not check_type(value, type_name):
            raise UsageError(f"{endpoint.name}: {name} must be {_human(type_name)}, got {value!r}")
    return body


# Scalars Comet charts only as numbers: a bare word there is a typo far more often than a
# text metric, so the text form must be asked for explicitly as a JSON string.
NUMERIC_FIRST = frozenset({"metricValue"})


def parse_value(name: str, text: str, type_name: str) -> object:
    """Turn the text of ``FIELD=VALUE`` into the JSON value the field's type asks for."""
    base = type_name.rstrip("?")
    if type_name.endswith("?") and text == "null":
        return None
    if base == "str":
        return text
    if base == "list[str]" and not text.startswith("["):
        return [part for part in text.split(",") if part]
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        if name in NUMERIC_FIRST:
            raise UsageError(
                f"{name} must be a number, got {text!r}; a text value goes quoted as JSON: "
                f"{name}='\"{text}\"'"
            ) from None
        if base in ("scalar", "any"):
            return text
        raise UsageError(f"{name} must be {_human(type_name)}, got {text!r}") from None
    if base == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if base in ("scalar", "any") and not isinstance(value, dict | list):
        return value
    if not check_type(value, type_name):
        raise UsageError(f"{name} must be {_human(type_name)}, got {text!r}")
    return value


_HUMAN = {"str": "text", "int": "a whole number", "number": "a number", "bool": "true or false",
          "scalar": "text, a number or true/false", "object": "a JSON object",
          "list": "a JSON list", "list[str]": "a list of text (a,b,c)",
          "list[number]": "a list of numbers", "list[object]": "a list of JSON objects",
          "any": "any JSON value"}  # fmt: skip


def _human(type_name: str) -> str:
    """Say a field type the way a user reads it: "int?" is "a whole number (or null)"."""
    base = type_name.rstrip("?")
    text = _HUMAN.get(base, base)
    return f"{text} (or null)" if type_name.endswith("?") else text


def _names(known: Mapping[str, str]) -> str:
    return ", ".join(known) or "(none)"


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"--body @{path}: cannot read it: {reason}") from None


def _read_upload(path: str) -> bytes:
    # The part's filename is the endpoint's (wire §2: "file" or "filename"), not the local name.
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"--file {path}: cannot read it: {exc.strerror}") from None


def _print_list(*, as_json: bool) -> None:
    rows = list(ENDPOINTS.values())
    if as_json:
        data = [
            {
                "name": e.name,
                "title": e.title,
                "method": e.method,
                "path": e.display_path,
                "key": e.key_in.value,
                "seed": e.seed,
                "required": dict(e.required),
                "optional": dict(e.optional),
                "note": e.note,
            }
            for e in rows
        ]
        print(json.dumps(data, indent=2))
        return
    width = max(len(e.name) for e in rows)
    out = sys.stdout
    for seed in (True, False):
        out.write(
            "Seed write endpoints:\n" if seed else "\nAlso used by the agent (not in the seed):\n"
        )
        for e in rows:
            if e.seed == seed:
                out.write(f"  {e.name:<{width}}  {e.method:<4}  {e.display_path}  ({e.title})\n")
