"""comet-agent upload: send offline archives (zips, partial directories, folders of them).

With no PATH, every archive and partial directory in the offline directory
goes. Partial directories are finalized first (one still written by a running
agent is skipped). Each archive is sent by ``agent.upload.uploader.Uploader``
through an outbox of its own, ``upload-outbox.sqlite`` in the state
directory: a running daemon owns its outbox (opening it releases the daemon's
leases), and an upload must never feed an offline daemon's sink. One upload
runs at a time (``upload.lock``). An archive sent in full is moved to the
``uploaded/`` folder next to it. Exit status: 0 when everything readable was
sent, 1 when sending failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import zipfile
from pathlib import Path
from typing import TextIO

from agent import human
from agent.api.client import CometClient
from agent.archive import find_archives, read_archive
from agent.archive.format import PARTIAL_SUFFIX
from agent.config import Settings
from agent.delivery.outbox import Outbox
from agent.errors import AgentError, UsageError
from agent.lifecycle.hardening import disable_core_dumps
from agent.lifecycle.state import make_private_dir as make_state_dir
from agent.upload.progress import Progress
from agent.upload.replay import Replay
from agent.upload.uploader import Outcome, Uploader

OUTBOX_FILE = "upload-outbox.sqlite"
LOCK_FILE = "upload.lock"
SHOWN_PROBLEMS = 20


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``comet-agent upload [PATH...] [--dry-run] [--workspace W] [--project P]``."""
    given = [Path(p).expanduser() for p in args.paths]
    for path in given:
        if not path.exists():
            raise UsageError(
                f"no such archive or directory: {path}; give a .zip, a .partial "
                "directory or a directory holding them"
            )
    paths = _expand(given or [settings.offline_directory])
    for path in paths:
        why = not_an_archive(path)
        if why is not None:
            raise UsageError(
                f"{path} is not an offline archive ({why}); nothing was sent or moved. Give a "
                "<key>.zip or <key>.partial directory that comet-agent or comet_ml wrote"
            )
    where = ", ".join(str(p) for p in given) if given else str(settings.offline_directory)
    if not paths:
        print(f"no offline archives in {where}; nothing to upload")
        return 0
    if args.dry_run:
        outcomes = [_dry_run(path) for path in paths]
        _summary(outcomes, sys.stdout, dry_run=True)
        return 0
    if not settings.api_key:
        raise UsageError(
            "uploading needs an API key: set COMET_API_KEY, --api-key-file or the "
            "comet-api-key credential (or use --dry-run)"
        )
    disable_core_dumps()  # the API key is in this process's memory (agent.lifecycle.hardening)
    progress = Progress(sys.stderr)
    make_state_dir(settings.state_directory)
    lock_fd = _lock(settings.state_directory / LOCK_FILE)
    try:
        outcomes = _upload_all(paths, args, settings, progress)
    finally:
        os.close(lock_fd)
    _summary(outcomes, sys.stdout, dry_run=False)
    return 1 if any(o.error for o in outcomes) else 0


_MEMBERS = (b"experiment.json", b"messages.json")
_ZIP_MAGIC = b"PK\x03\x04"
_SNIFF = 1 << 20


def not_an_archive(path: Path) -> str | None:
    """Say why `path` is no offline archive, or None when it is one (damaged ones included).

    A zip cut short has no central directory but still starts with a local header and
    names its members there: the reader salvages it, so it counts as an archive.
    """
    if path.is_dir():
        if not any((path / m.decode()).is_file() for m in _MEMBERS):
            return "a directory without experiment.json or messages.json"
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    if not head.startswith(_ZIP_MAGIC):
        return "not a zip file"
    if not any(m in head for m in _MEMBERS) and not _names_a_member(path):
        return "a zip without experiment.json or messages.json"
    return None


def _names_a_member(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n in zf.namelist() for n in ("experiment.json", "messages.json"))
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        is_archive = path.suffix == ".zip" or path.name.endswith(PARTIAL_SUFFIX)
        out.extend([path] if is_archive or path.is_file() else find_archives(path))
    return list(dict.fromkeys(out))


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AgentError(
            f"another comet-agent upload is running ({path} is locked); wait for it to finish"
        ) from None
    return fd


def _upload_all(
    paths: list[Path], args: argparse.Namespace, settings: Settings, progress: Progress
) -> list[Outcome]:
    outbox = Outbox(settings.state_directory / OUTBOX_FILE, max_bytes=settings.outbox_max_bytes)
    client = CometClient.from_settings(settings)
    try:
        uploader = Uploader(outbox, client, settings, progress, args.workspace, args.project_name)
        uploader.force = bool(getattr(args, "force_upload", False))
        uploader.settle_marker()
        return [uploader.upload(path) for path in paths]
    finally:
        client.close()
        outbox.close()


def _dry_run(path: Path) -> Outcome:
    outcome = Outcome(path)
    with read_archive(path) as archive:
        outcome.key = archive.offline_id
        replay = Replay(archive, outcome.key)
        for step in replay:
            outcome.messages += 1
            outcome.bytes += len(step.message.encoded_body()) + len(step.message.attachment or b"")
        outcome.problems.extend(replay.problems)
    return outcome


def _summary(outcomes: list[Outcome], out: TextIO, *, dry_run: bool) -> None:
    sent = [o for o in outcomes if not o.error and not o.skipped]
    for o in outcomes:
        figures = f"{o.messages:,} messages, {_size(o.bytes)}"
        if o.skipped:
            print(f"skipped {o.path}: {o.skipped}", file=out)
        elif o.error:
            print(f"FAILED {o.path}: {o.error} ({figures} sent)", file=out)
        elif dry_run:
            print(f"would upload {o.path}: experiment {o.key}, {figures}", file=out)
        else:
            link = o.url or o.key
            moved = f"; moved to {o.moved_to}" if o.moved_to else ""
            print(f"uploaded {o.path.name}: {link} ({figures}){moved}", file=out)
        for problem in o.problems[:SHOWN_PROBLEMS]:
            print(f"  problem: {problem}", file=out)
        if len(o.problems) > SHOWN_PROBLEMS:
            print(f"  ... and {len(o.problems) - SHOWN_PROBLEMS} more problems", file=out)
    verb = "would send" if dry_run else "sent"
    messages = sum(o.messages for o in outcomes)
    print(
        f"{len(sent)} of {len(outcomes)} experiment(s) {'ready' if dry_run else 'uploaded'}; "
        f"{verb} {messages:,} messages, {_size(sum(o.bytes for o in outcomes))}",
        file=out,
    )


def _size(n: int) -> str:
    return human.amount(n)  # the progress line's units
