"""osPackages: the distribution's installed packages, read from the package databases' files.

No package manager is run: dpkg's status file (Debian, Ubuntu), apk's
installed database (Alpine) and rpm's SQLite database (Fedora 33+, RHEL 9,
Amazon Linux 2023, openSUSE) are parsed directly. dpkg and apk entries are
``name=version``; rpm entries ``name=version-release``, as ``rpm -q`` shows
them without the epoch. Older rpm databases (Berkeley DB, ndb) are not read.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable
from functools import partial
from pathlib import Path

from agent.collect.base import Roots, read_small
from agent.errors import CollectorError, NoData, Unsupported

_DB_LIMIT = 64 << 20  # dpkg's status file is a few MB on a large host; apk's holds file lists
_RPM_TAGS = {1000: "name", 1001: "version", 1002: "release"}
_RPM_STRING_TYPES = (6, 8, 9)  # STRING, STRING_ARRAY, I18NSTRING: the first string is the value
_RPM_SQLITE = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
_RPM_OLD = ("var/lib/rpm/Packages", "var/lib/rpm/Packages.db", "usr/lib/sysimage/rpm/Packages.db")


def _stanzas(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def parse_dpkg_status(text: str) -> list[str]:
    """Return ``name=version`` for every installed package in dpkg's status file, sorted."""
    if not text.strip():
        raise NoData("dpkg status file is empty")
    found = set()
    for stanza in _stanzas(text):
        fields = {}
        for line in stanza:
            if line[0] in " \t":
                continue  # continuation of a multi-line field (Description, Conffiles)
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        # "install ok installed" and "hold ok installed" are both installed; anything else
        # (deinstall ... config-files, half-configured) is not.
        if fields.get("status", "").split()[1:] != ["ok", "installed"]:
            continue
        name, version = fields.get("package"), fields.get("version")
        if not name or not version:
            raise CollectorError(
                f"dpkg status: the entry {stanza[0][:40]!r} has no Package or Version; "
                "the file looks truncated"
            )
        found.add(f"{name}={version}")
    return sorted(found)


def parse_apk_installed(text: str) -> list[str]:
    """Return ``name=version`` for every package in apk's installed database, sorted."""
    if not text.strip():
        raise NoData("apk installed database is empty")
    found = set()
    for stanza in _stanzas(text):
        fields = {line[:2]: line[2:].strip() for line in reversed(stanza) if line[1:2] == ":"}
        name, version = fields.get("P:"), fields.get("V:")
        if not name or not version:
            raise CollectorError(
                f"apk database: the entry {stanza[0][:40]!r} has no P: or V: line; "
                "the file looks truncated"
            )
        found.add(f"{name}={version}")
    return sorted(found)


def parse_rpm_header(blob: bytes) -> str:
    """Return ``name=version-release`` from one rpm header blob (rpmdb.sqlite's Packages.blob).

    The blob is ``il`` and ``dl`` (big-endian int32), ``il`` index entries of
    (tag, type, offset, count), then ``dl`` bytes of data.
    """
    if len(blob) < 8:
        raise CollectorError(f"rpm header: {len(blob)} bytes, too short for a header")
    count, data_len = struct.unpack_from(">II", blob)
    data_start = 8 + 16 * count
    if data_start + data_len > len(blob):
        raise CollectorError(
            f"rpm header: {count} entries and {data_len} data bytes do not fit in {len(blob)} bytes"
        )
    data = blob[data_start : data_start + data_len]
    values: dict[str, str] = {}
    for i in range(count):
        tag, kind, offset, _ = struct.unpack_from(">iiii", blob, 8 + 16 * i)
        if tag not in _RPM_TAGS or kind not in _RPM_STRING_TYPES:
            continue
        end = data.find(b"\0", offset)
        if offset < 0 or end < 0:
            raise CollectorError(f"rpm header: tag {tag} points outside the data")
        values[_RPM_TAGS[tag]] = data[offset:end].decode("utf-8", errors="replace")
    missing = [k for k in ("name", "version", "release") if not values.get(k)]
    if missing:
        raise CollectorError(f"rpm header: no {', '.join(missing)} tag")
    return f"{values['name']}={values['version']}-{values['release']}"


def read_rpm_sqlite(path: Path) -> list[str]:
    """Return ``name=version-release`` for every package in an rpmdb.sqlite file, sorted."""
    if not path.is_file():
        raise NoData(f"{path} does not exist")
    try:
        rows = _rpm_rows(path, "mode=ro")
    except sqlite3.OperationalError:
        # A WAL database whose -shm we cannot write opens only as immutable (no locking).
        try:
            rows = _rpm_rows(path, "immutable=1")
        except sqlite3.Error as exc:
            raise CollectorError(f"cannot read {path}: {exc}") from None
    except sqlite3.Error as exc:
        raise CollectorError(f"cannot read {path}: {exc}") from None
    return sorted({parse_rpm_header(blob) for blob in rows})


def _rpm_rows(path: Path, mode: str) -> list[bytes]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
    try:
        return [bytes(row[0]) for row in conn.execute("SELECT blob FROM Packages")]
    finally:
        conn.close()


def _read_db(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_small names what is wrong
    if size > _DB_LIMIT:
        raise CollectorError(f"{path} is {size} bytes, over {_DB_LIMIT >> 20} MB; not read")
    return read_small(path, limit=_DB_LIMIT)


def read_os_packages(roots: Roots) -> list[str]:
    """Return every installed OS package the host's databases list; empty when there is none."""
    root = roots.root
    readers: list[Callable[[], list[str]]] = [
        lambda: parse_dpkg_status(_read_db(root / "var" / "lib" / "dpkg" / "status")),
        lambda: parse_apk_installed(_read_db(root / "lib" / "apk" / "db" / "installed")),
        *(partial(read_rpm_sqlite, root / rel) for rel in _RPM_SQLITE),
    ]
    found: set[str] = set()
    for reader in readers:
        try:
            found.update(reader())
        except NoData:
            continue
    if not found:
        old = next((rel for rel in _RPM_OLD if (root / rel).exists()), None)
        if old is not None:
            raise Unsupported(
                f"/{old} is an rpm database in Berkeley DB or ndb format, which is not read; "
                "osPackages is left out"
            )
    return sorted(found)
