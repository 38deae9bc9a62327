"""Offline archives (wire §6): the format, the writer with its crash recovery, the reader.

``from agent.archive import read_archive, finalize_partial, upload_hint`` is
all most callers need; the submodules hold the details.
"""

from __future__ import annotations

from agent.archive.files import ArchiveBusy
from agent.archive.finalize import Finalized, finalize_partial, recover_partials
from agent.archive.format import (
    AGENT_LINES,
    EXPERIMENT,
    MESSAGES,
    PARTIAL_SUFFIX,
    Problem,
    check_experiment,
    check_line,
    dump_line,
    experiment_record,
    upload_hint,
)
from agent.archive.reader import AgentLine, Archive, Line, find_archives, read_archive
from agent.archive.writer import PartialArchive

__all__ = [
    "AGENT_LINES",
    "EXPERIMENT",
    "MESSAGES",
    "PARTIAL_SUFFIX",
    "AgentLine",
    "Archive",
    "ArchiveBusy",
    "Finalized",
    "Line",
    "PartialArchive",
    "Problem",
    "check_experiment",
    "check_line",
    "dump_line",
    "experiment_record",
    "finalize_partial",
    "find_archives",
    "read_archive",
    "recover_partials",
    "upload_hint",
]
