"""Reading an archive (a zip or a partial directory), damaged or not, without ever crashing.

``read_archive(path)`` opens it; ``lines()`` yields the valid messages.json
lines with their line numbers, ``agent_lines()`` the agent's own lines, and
``read_file(name)`` an attached file. Whatever cannot be read is skipped and
named in ``problems`` (member, line number, why), which is complete once the
iterators have run. A zip whose central directory is gone (a copy cut short)
is salvaged from its local headers, as far as its bytes go.

An archive may come from anyone (``upload`` and ``report`` take a path), so
reading is bounded: a line longer than ``MAX_LINE_BYTES`` is skipped as it
streams past (never held whole), a member read whole (``read_file``) or
salvaged may hold at most ``MAX_MEMBER_BYTES``, and JSON nested too deep to
parse is a damaged line like any other.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agent.archive.files import open_file, regular_files
from agent.archive.format import (
    AGENT_LINES,
    EXPERIMENT,
    MESSAGES,
    PARTIAL_SUFFIX,
    Problem,
    check_experiment,
    check_line,
)

_CHUNK = 1 << 20
# The SDK's largest lines (installed packages, a big log_other) are well under 1 MiB.
MAX_LINE_BYTES = 16 << 20
# Attachments (code, a patch) are small; an image or a model goes through Comet, not the archive.
MAX_MEMBER_BYTES = 256 << 20
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_SUFFIXED = re.compile(r"^(?P<id>.+?)(?:-[A-Za-z]{6})?$")
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)
_JSON_ERRORS = (ValueError, RecursionError)  # RecursionError: nesting deeper than the parser


@dataclass(frozen=True)
class Line:
    """One valid messages.json line."""

    number: int
    type: str
    payload: dict[str, object]

    @property
    def message_id(self) -> int:
        """The line's message_id, or its line number when it has none (as the SDK does)."""
        mid = self.payload.get("message_id")
        return mid if isinstance(mid, int) and not isinstance(mid, bool) else self.number


@dataclass(frozen=True)
class AgentLine:
    """One line of comet_agent.jsonl: a message to replay verbatim."""

    number: int
    endpoint: str
    body: dict[str, object]
    created_ms: int
    after: int  # the last messages.json message_id written before this message's own lines
    replaces: tuple[int, ...] = ()  # messages.json lines this one stands for, for our uploader
    attachment: str | None = None  # file in the archive holding the multipart upload


class Archive:
    """An opened archive. Use as a context manager, or call ``close()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self._zip: zipfile.ZipFile | None = None
        self._salvaged: dict[str, bytes] | None = None
        if path.is_dir():
            self.names = [p.name for p in regular_files(path)]
            self.names = [n for n in self.names if not n.startswith(".")]
        else:
            self.names = self._open_zip()
        self.experiment = self._experiment()
        if MESSAGES not in self.names:
            self.problems.append(Problem(MESSAGES, None, "missing from the archive"))

    def _open_zip(self) -> list[str]:
        try:
            self._zip = zipfile.ZipFile(self.path)
            return self._zip.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            if isinstance(exc, FileNotFoundError):
                self.problems.append(Problem(self.path.name, None, "no such file"))
                self._salvaged = {}
                return []
            self.problems.append(
                Problem(self.path.name, None, "not a complete zip (cut short?); salvaging")
            )
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            self.problems.append(Problem(self.path.name, None, f"unreadable: {exc.strerror}"))
            data = b""
        self._salvaged = _salvage(data, self.problems)
        return list(self._salvaged)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the zip file, if one is open."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    @property
    def offline_id(self) -> str:
        """The experiment key: experiment.json's offline_id, else derived from the file name."""
        found = self.experiment.get("offline_id")
        if isinstance(found, str) and found:
            return found
        stem = self.path.name.removesuffix(PARTIAL_SUFFIX).removesuffix(".zip")
        match = _SUFFIXED.match(stem)
        return match.group("id") if match else stem

    def _experiment(self) -> dict[str, object]:
        raw = self.read_file(EXPERIMENT)
        if raw is None:
            self.problems.append(Problem(EXPERIMENT, None, "missing"))
            return {}
        try:
            data = json.loads(raw)
        except _JSON_ERRORS:
            self.problems.append(Problem(EXPERIMENT, None, "not JSON"))
            return {}
        why = check_experiment(data)
        if why:
            self.problems.append(Problem(EXPERIMENT, None, "; ".join(why)))
        return data if isinstance(data, dict) else {}

    def _open(self, name: str) -> IO[bytes]:
        if self._salvaged is not None:
            return io.BytesIO(self._salvaged[name])
        if self._zip is not None:
            return self._zip.open(name)
        return open_file(self.path / name, "rb")

    def read_file(self, name: str) -> bytes | None:
        """Return a member's bytes, or None (with a problem when it is unreadable or too big)."""
        if name not in self.names:
            return None
        try:
            with self._open(name) as fh:
                data = fh.read(MAX_MEMBER_BYTES + 1)
        except _READ_ERRORS as exc:
            self.problems.append(Problem(name, None, f"unreadable: {_reason(exc)}"))
            return None
        if len(data) > MAX_MEMBER_BYTES:
            self.problems.append(
                Problem(name, None, f"larger than {MAX_MEMBER_BYTES >> 20} MiB: skipped")
            )
            return None
        return data

    def line_count(self, member: str) -> int:
        """Return how many line ends `member` holds (for progress; damage is not reported)."""
        count = 0
        if member in self.names:
            with contextlib.suppress(*_READ_ERRORS), self._open(member) as fh:
                while chunk := fh.read(_CHUNK):
                    count += chunk.count(b"\n")
        return count

    def raw_lines(self, member: str = MESSAGES) -> Iterator[tuple[int, bytes]]:
        """Yield (line number, bytes without the newline) for each complete line of `member`.

        A last line without a newline is kept if it parses, else reported as torn.
        """
        if member not in self.names:
            return
        number, carry, skipping = 0, bytearray(), False
        try:
            with self._open(member) as fh:
                while chunk := fh.read(_CHUNK):
                    # Only the unfinished line is carried over, so each byte is copied a
                    # bounded number of times (joining carry + chunk each time was quadratic).
                    end = chunk.rfind(b"\n")
                    if end < 0:
                        if not skipping:
                            carry += chunk
                            skipping = len(carry) > MAX_LINE_BYTES
                            if skipping:
                                carry = bytearray()
                        continue
                    parts = chunk[:end].split(b"\n")
                    for i, part in enumerate(parts):
                        number += 1
                        if i == 0 and skipping:
                            self._too_long(member, number)
                        elif i == 0 and carry:
                            yield number, bytes(carry + part)
                        else:
                            yield number, part
                    carry, skipping = bytearray(chunk[end + 1 :]), False
                    if len(carry) > MAX_LINE_BYTES:
                        carry, skipping = bytearray(), True
        except _READ_ERRORS as exc:
            self.problems.append(
                Problem(member, number + 1, f"unreadable from here on: {_reason(exc)}")
            )
        if skipping:
            self._too_long(member, number + 1)
            return
        if carry:
            number += 1
            try:
                json.loads(carry)
            except _JSON_ERRORS:
                self.problems.append(
                    Problem(member, number, f"torn last line ({len(carry)} bytes): dropped")
                )
                return
            yield number, bytes(carry)

    def _too_long(self, member: str, number: int) -> None:
        why = f"line longer than {MAX_LINE_BYTES >> 20} MiB: skipped"
        self.problems.append(Problem(member, number, why))

    def lines(self) -> Iterator[Line]:
        """Yield every valid messages.json line; the invalid ones go to ``problems``."""
        for number, raw in self.raw_lines(MESSAGES):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except _JSON_ERRORS:
                self.problems.append(Problem(MESSAGES, number, "not JSON"))
                continue
            why = check_line(obj)
            if why:
                self.problems.append(Problem(MESSAGES, number, "; ".join(why)))
                continue
            yield Line(number, obj["type"], obj["payload"])

    def agent_lines(self) -> Iterator[AgentLine]:
        """Yield every readable line of comet_agent.jsonl (none for an SDK archive)."""
        for number, raw in self.raw_lines(AGENT_LINES):
            try:
                obj = json.loads(raw)
                endpoint, body = obj["endpoint"], obj["body"]
                if not isinstance(endpoint, str) or not isinstance(body, dict):
                    raise TypeError(endpoint)
                line = AgentLine(
                    number,
                    endpoint,
                    body,
                    int(obj.get("created_ms", 0)),
                    int(obj["after"]),
                    tuple(int(i) for i in obj.get("replaces", ())),
                    obj.get("attachment"),
                )
            except (*_JSON_ERRORS, KeyError, TypeError, OverflowError):
                self.problems.append(Problem(AGENT_LINES, number, "not an agent line"))
                continue
            yield line


def read_archive(path: Path) -> Archive:
    """Open the archive at `path` (a .zip or a .partial directory); never raises for damage."""
    return Archive(path)


def find_archives(directory: Path) -> list[Path]:
    """Return the archives (zips and partial directories) right in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [
        p
        for p in directory.iterdir()
        if not p.name.startswith(".")
        and (
            (p.is_file() and p.suffix == ".zip") or (p.is_dir() and p.name.endswith(PARTIAL_SUFFIX))
        )
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _salvage(data: bytes, problems: list[Problem]) -> dict[str, bytes]:
    """Recover members from the local headers of a zip whose central directory is lost."""
    found: dict[str, bytes] = {}
    pos = data.find(b"PK\x03\x04")
    while pos != -1 and pos + _LOCAL_HEADER.size <= len(data):
        _, _, flags, method, _, _, _, csize, usize, nlen, xlen = _LOCAL_HEADER.unpack_from(
            data, pos
        )
        start = pos + _LOCAL_HEADER.size + nlen + xlen
        name = data[pos + _LOCAL_HEADER.size : pos + _LOCAL_HEADER.size + nlen].decode(
            "utf-8", "replace"
        )
        sized = not flags & 0x08 and csize not in (0, 0xFFFFFFFF)
        raw = data[start : start + csize] if sized else data[start:]
        if method == zipfile.ZIP_STORED:
            content, whole = (raw, len(raw) == csize) if sized else (raw, False)
        elif method == zipfile.ZIP_DEFLATED:
            content, whole = _inflate(raw)
        else:
            problems.append(Problem(name, None, f"compression method {method} not supported"))
            content, whole = b"", False
        if not whole:
            problems.append(Problem(name, None, "cut short; kept what could be read"))
        if name and name not in found and not name.endswith("/"):
            found[name] = content[:usize] if sized and usize else content
        nxt = start + len(raw) if sized and whole else start
        pos = data.find(b"PK\x03\x04", max(nxt, pos + 1))
    return found


def _inflate(raw: bytes) -> tuple[bytes, bool]:
    """Inflate as much of a raw deflate stream as is intact; say whether it ended cleanly."""
    inflater = zlib.decompressobj(-15)
    out: list[bytes] = []
    size = 0
    for i in range(0, len(raw), 1 << 16):
        try:
            out.append(inflater.decompress(raw[i : i + (1 << 16)], MAX_MEMBER_BYTES - size + 1))
        except zlib.error:
            return b"".join(out), False
        size += len(out[-1])
        if size > MAX_MEMBER_BYTES or inflater.unconsumed_tail:  # a bomb: keep what fits
            return b"".join(out)[:MAX_MEMBER_BYTES], False
        if inflater.eof:
            break
    with contextlib.suppress(zlib.error):
        out.append(inflater.flush())
    return b"".join(out), inflater.eof
