"""Turning a partial directory into the final zip, after a clean stop or after a crash.

The zip is written to a temp name in the same directory, fsynced, renamed,
and the directory fsynced; ``.finalizing`` records the name first, so a crash
between the rename and removing the partial directory never yields a second
archive of the same run. ``finalize_partial()`` (recovery) checks every line
against wire §6.3: a torn last line, an invalid line or a ``file_upload``
whose file is missing is dropped and named, because an invalid ``metric_msg``
would stop the SDK's uploader from sending any later metric.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import string
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.archive.files import (
    CHUNK,
    PRIVATE_FILE,
    ArchiveBusy,
    fsync_dir,
    lock,
    open_file,
    raw_lines,
    regular_files,
    write_private,
)
from agent.archive.format import (
    AGENT_LINES,
    EXPERIMENT,
    MESSAGES,
    PARTIAL_SUFFIX,
    Problem,
    archive_name,
    check_experiment,
    check_line,
    experiment_record,
)
from agent.errors import UsageError

FINALIZING = ".finalizing"  # holds the zip's name while it is being renamed into place


@dataclass(frozen=True)
class Finalized:
    """A zip made from a partial directory: where it is, how many lines it holds, what was lost."""

    path: Path
    lines: int
    problems: tuple[Problem, ...] = ()


def finalize_partial(path: Path) -> Finalized:
    """Turn a partial directory (after a crash or kill) into a zip; report what was dropped.

    Every line is checked against wire §6.3; a torn last line, an invalid line
    or a ``file_upload`` whose file is missing is dropped and named in
    ``problems``. Raises ArchiveBusy when a live process still writes it.
    """
    if not path.is_dir():
        raise UsageError(f"{path} is not a partial archive directory; give a <key>.partial path")
    lock_fd = lock(path)
    try:
        return zip_partial(path, verify=True)
    finally:
        os.close(lock_fd)


def recover_partials(directory: Path, *, skip: Sequence[Path] = ()) -> list[Finalized]:
    """Finalize every partial directory in `directory` that no live process is writing."""
    done: list[Finalized] = []
    if not directory.is_dir():
        return done
    for path in sorted(directory.glob(f"*{PARTIAL_SUFFIX}")):
        if path in skip or not path.is_dir():
            continue
        try:
            done.append(finalize_partial(path))
        except ArchiveBusy:
            continue
    return done


def zip_partial(path: Path, *, verify: bool) -> Finalized:
    """Zip a partial directory whose lock the caller holds, then remove it.

    With `verify`, every line is parsed and checked (recovery); without, the
    writer's own lines are trusted and only a torn last line is dropped.
    """
    problems: list[Problem] = []
    marker = path / FINALIZING
    if marker.exists():  # a crash came after the rename: the zip is already in place
        name = marker.read_text().strip()
        target = path.parent / name
        if name and target.is_file() and zipfile.is_zipfile(target):
            shutil.rmtree(path)
            return Finalized(target, _count_lines(target), ())
    experiment = _read_experiment(path, problems)
    offline_id = str(experiment.get("offline_id") or path.name.removesuffix(PARTIAL_SUFFIX))
    strategy = str(experiment.get("resume_strategy") or "create")
    name = archive_name(offline_id, strategy, None if strategy == "create" else _letters())
    while (path.parent / name).exists():
        name = archive_name(offline_id, strategy, _letters())
    target = path.parent / name
    tmp = path.parent / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as fh:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            names = {p.name for p in regular_files(path)}
            extra = sorted(n for n in names - {EXPERIMENT, MESSAGES, AGENT_LINES} if _member(n))
            # experiment.json first: a copy cut short still says whose run it is.
            stop_ms, last_ms = experiment.get("stop_time"), _tail_timestamp(path / MESSAGES)
            if last_ms is not None and isinstance(stop_ms, int):
                experiment["stop_time"] = max(stop_ms, last_ms)
            zf.writestr(EXPERIMENT, json.dumps(experiment))
            check = _line_check(set(extra)) if verify else None
            count = _copy_lines(path / MESSAGES, zf, MESSAGES, problems, check)
            for extra_name in extra:
                zf.write(path / extra_name, extra_name)
            if AGENT_LINES in names:
                _copy_lines(path / AGENT_LINES, zf, AGENT_LINES, problems, _agent_check)
        fh.flush()
        os.fsync(fh.fileno())
    write_private(marker, name.encode())
    os.replace(tmp, target)
    fsync_dir(path.parent)
    shutil.rmtree(path)
    return Finalized(target, count, tuple(problems))


def _member(name: str) -> bool:
    """Whether a file of the partial directory belongs in the zip (not the lock or temp files)."""
    return not name.startswith(".")


def _letters() -> str:
    # SystemRandom, as secrets does, without secrets' import of hmac and hashlib (memory the
    # daemon would hold for one name at the end).
    return "".join(random.SystemRandom().choice(string.ascii_letters) for _ in range(6))


def _read_experiment(path: Path, problems: list[Problem]) -> dict[str, object]:
    try:
        with open_file(path / EXPERIMENT, "rb") as fh:
            data = json.loads(fh.read())
        why = check_experiment(data)
    except (OSError, ValueError) as exc:
        data, why = None, [f"unreadable ({type(exc).__name__})"]
    if isinstance(data, dict) and not why:
        return data
    problems.append(Problem(EXPERIMENT, None, "; ".join(why) + "; rebuilt from the lines"))
    stamp = int((path / MESSAGES).stat().st_mtime * 1000) if (path / MESSAGES).exists() else 0
    return experiment_record(
        offline_id=path.name.removesuffix(PARTIAL_SUFFIX),
        workspace=None,
        project=None,
        start_ms=_first_timestamp(path / MESSAGES) or stamp,
        stop_ms=stamp,
    )


LineCheck = Callable[[bytes], str | None]  # what is wrong with a line, or None


def _line_check(files: set[str]) -> LineCheck:
    def check(raw: bytes) -> str | None:
        try:
            obj = json.loads(raw)
        except ValueError:
            return "not JSON"
        why = check_line(obj)
        if why:
            return "; ".join(why)
        payload = obj["payload"]
        if obj["type"] == "file_upload" and payload["file_path"] not in files:
            return f"names {payload['file_path']!r}, which is not in the archive"
        return None

    return check


def _agent_check(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return "not JSON"
    ok = isinstance(obj, dict) and isinstance(obj.get("endpoint"), str)
    return None if ok and isinstance(obj.get("body"), dict) else "not an agent line"


def _copy_lines(
    src: Path,
    zf: zipfile.ZipFile,
    member: str,
    problems: list[Problem],
    check: LineCheck | None,
) -> int:
    """Copy the complete (and, with `check`, valid) lines of `src` into `member`; count them."""
    count, number = 0, 0
    size = src.stat().st_size if src.exists() else 0
    with zf.open(member, "w", force_zip64=size > (1 << 31)) as out:
        for raw, complete in raw_lines(src):
            number += 1
            if not complete:
                problems.append(
                    Problem(member, number, f"torn last line ({len(raw)} bytes, no line end)")
                )
                break
            if check is not None:
                why = check(raw)
                if why is not None:
                    problems.append(Problem(member, number, f"dropped: {why}"))
                    continue
            out.write(raw + b"\n")
            count += 1
    return count


def _tail_timestamp(path: Path) -> int | None:
    """Return the local_timestamp of the last complete line that has one (the run's last word)."""
    if not path.exists():
        return None
    with open_file(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, end - CHUNK))
        tail = fh.read().split(b"\n")[:-1]  # the part after the last newline is torn or empty
    for raw in reversed(tail):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            stamp = json.loads(raw)["payload"]["local_timestamp"]
            if isinstance(stamp, int) and not isinstance(stamp, bool):
                return stamp
    return None


def _first_timestamp(path: Path) -> int | None:
    for raw, _ in raw_lines(path):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            stamp = json.loads(raw)["payload"]["local_timestamp"]
            if isinstance(stamp, int):
                return stamp
    return None


def _count_lines(path: Path) -> int:
    with (
        contextlib.suppress(OSError, zipfile.BadZipFile, KeyError),
        zipfile.ZipFile(path) as zf,
        zf.open(MESSAGES) as fh,
    ):
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(CHUNK), b""))
    return 0
