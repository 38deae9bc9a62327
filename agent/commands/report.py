"""comet-agent report: draw a run's archive as a self-contained HTML page (or a PNG).

The source is an offline archive (a zip, or the partial directory of a run
still going or cut short); with no PATH, the newest one in the offline
directory, its ``uploaded/`` folder, or its ``online/`` folder (the local
copies online agents keep with ``local_copy``). A state directory names its
agent's archive in ``status.json``: an offline agent's, or an online agent's
local copy. Without a local copy an online agent has nothing to draw: its
outbox only holds what has not been sent yet, never the whole run.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from agent.archive import find_archives
from agent.archive.format import PARTIAL_SUFFIX
from agent.config import Settings
from agent.errors import UsageError
from agent.lifecycle.state import STATUS_NAME, read_status
from agent.report.data import load
from agent.report.page import render_html
from agent.report.panels import panels

LOCAL_COPY_HINT = "--local-copy (or [comet] local_copy = true)"
PNG_HINT = "--png needs matplotlib: pip install 'comet-agent[png]'"


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``comet-agent report [PATH] [-o FILE] [--png]``."""
    source = _source(Path(args.path).expanduser() if args.path else None, settings)
    output = Path(args.output or ("report.png" if args.png else "report.html")).expanduser()
    if args.png:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            raise UsageError(PNG_HINT) from None
    data = load(source)
    if args.png:
        from agent.report.png import render_png

        render_png(data, panels(data), output)
    else:
        output.write_text(render_html(data), encoding="utf-8")
    size_kb = output.stat().st_size / 1024
    print(f"report of {source} written to {output} ({size_kb:,.0f} KB)")
    return 0


def _source(path: Path | None, settings: Settings) -> Path:
    if path is not None and not path.exists():
        raise UsageError(f"no such archive: {path}; give a .zip or a .partial directory")
    if path is not None and (path.is_file() or path.name.endswith(PARTIAL_SUFFIX)):
        return path
    if path is not None and (path / STATUS_NAME).is_file():
        return _from_state(path)
    if path is None:
        folders = [settings.offline_directory, settings.local_copy_directory]
    else:
        folders = [path]
    found = [p for f in folders for sub in (f, f / "uploaded") for p in find_archives(sub)]
    if not found:
        raise UsageError(
            f"{folders[0]} holds no archive; give a .zip or .partial path, or a state directory "
            f"(online agents keep one only with {LOCAL_COPY_HINT})"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def _from_state(state: Path) -> Path:
    """The archive the agent on `state` writes (offline) or keeps as a local copy (online)."""
    snapshot = read_status(state)
    archive = snapshot.archive if snapshot is not None else None
    try:
        found = archive is not None and Path(archive).exists()
    except OSError:  # a damaged snapshot's name, too long for a path: gone as well
        found = False
    if archive is not None and found:
        return Path(archive)
    if archive is not None:
        raise UsageError(f"the archive of the agent on {state}, {archive}, is gone")
    raise UsageError(
        f"the agent on {state} keeps no archive: it sends online without a local copy; "
        f"start it with {LOCAL_COPY_HINT} to draw its runs"
    )
