"""osPackages from dpkg's status file, apk's database and rpm's SQLite database."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest

from agent.collect import ospackages
from agent.collect.base import Roots
from agent.errors import CollectorError, NoData, Unsupported

FIXTURES = Path(__file__).parent / "fixtures"
PLAIN = Roots.under(FIXTURES / "host-plain")
ALPINE = Roots.under(FIXTURES / "host-alpine")
ARM = Roots.under(FIXTURES / "host-arm")

STRING, INT32, BIN = 6, 4, 7


def rpm_header(name: str, version: str, release: str | None, epoch: int | None = 1) -> bytes:
    """Build an rpm header blob as rpm stores it in rpmdb.sqlite (il, dl, index, data).

    Like a real one it starts with the immutable-region tag (63, BIN) and carries an
    INT32 epoch, which the parser must skip.
    """
    entries: list[tuple[int, int, bytes]] = [(63, BIN, b"\0" * 16)]
    if epoch is not None:
        entries.append((1003, INT32, struct.pack(">i", epoch)))
    entries += [(1000, STRING, name.encode() + b"\0"), (1001, STRING, version.encode() + b"\0")]
    if release is not None:
        entries.append((1002, STRING, release.encode() + b"\0"))
    index, data = b"", b""
    for tag, kind, value in entries:
        index += struct.pack(">iiii", tag, kind, len(data), 1)
        data += value
    return struct.pack(">II", len(entries), len(data)) + index + data


def make_rpmdb(path: Path, blobs: list[bytes]) -> Path:
    """Write an rpmdb.sqlite with rpm's own schema for the Packages table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)"
    )
    conn.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs])
    conn.commit()
    conn.close()
    return path


def test_dpkg_installed_packages_only() -> None:
    """The Debian tree lists its four installed packages; the removed one is left out."""
    assert ospackages.read_os_packages(PLAIN) == [
        "adduser=3.134",
        "ca-certificates=20230311+deb12u1",
        "libc6=2.36-9+deb12u14",
        "zlib1g=1:1.2.13.dfsg-1",
    ]


def test_dpkg_held_and_multiarch() -> None:
    """A held package is installed; the same package for two architectures is listed once."""
    text = (
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\n\n"
        "Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36-9\n\n"
        "Package: cuda-drivers\nStatus: hold ok installed\nVersion: 550.54.15-1\n\n"
        "Package: half\nStatus: install ok half-configured\nVersion: 1\n"
    )
    assert ospackages.parse_dpkg_status(text) == ["cuda-drivers=550.54.15-1", "libc6=2.36-9"]


def test_dpkg_empty_is_no_data() -> None:
    """An empty status file is an absence."""
    with pytest.raises(NoData, match="dpkg status file is empty"):
        ospackages.parse_dpkg_status("\n")


def test_dpkg_truncated_entry() -> None:
    """An installed entry cut before its Version line is an error naming the entry."""
    text = (
        "Package: a\nStatus: install ok installed\nVersion: 1\n\n"
        "Package: b\nStatus: install ok installed\n"
    )
    with pytest.raises(CollectorError, match=r"'Package: b'.*truncated"):
        ospackages.parse_dpkg_status(text)


def test_apk_database() -> None:
    """The Alpine tree's database lists its three packages."""
    assert ospackages.read_os_packages(ALPINE) == [
        "alpine-baselayout=3.4.3-r2",
        "busybox=1.36.1-r15",
        "musl=1.2.4_git20230717-r4",
    ]


def test_apk_empty_and_truncated() -> None:
    """Empty is an absence; a P: without V: is an error."""
    with pytest.raises(NoData):
        ospackages.parse_apk_installed("")
    with pytest.raises(CollectorError, match="'C:Q1x=' has no P: or V:"):
        ospackages.parse_apk_installed("C:Q1x=\nP:musl\nA:x86_64\n")


def test_rpm_sqlite_database(tmp_path: Path) -> None:
    """rpmdb.sqlite's header blobs give name=version-release, without the epoch."""
    make_rpmdb(
        tmp_path / "var" / "lib" / "rpm" / "rpmdb.sqlite",
        [
            rpm_header("glibc", "2.39", "22.fc40"),
            rpm_header("bash", "5.2.26", "3.fc40", epoch=None),
        ],
    )
    assert ospackages.read_os_packages(Roots.under(tmp_path)) == [
        "bash=5.2.26-3.fc40",
        "glibc=2.39-22.fc40",
    ]


def test_rpm_sqlite_in_sysimage(tmp_path: Path) -> None:
    """openSUSE and newer Fedora keep the database under /usr/lib/sysimage/rpm."""
    make_rpmdb(
        tmp_path / "usr" / "lib" / "sysimage" / "rpm" / "rpmdb.sqlite",
        [rpm_header("zypper", "1.14.68", "150400.3.49.1")],
    )
    assert ospackages.read_os_packages(Roots.under(tmp_path)) == ["zypper=1.14.68-150400.3.49.1"]


def test_rpm_header_malformed() -> None:
    """Short, truncated or incomplete headers raise, saying what is wrong."""
    good = rpm_header("a", "1", "2")
    with pytest.raises(CollectorError, match="too short"):
        ospackages.parse_rpm_header(b"\0\0")
    with pytest.raises(CollectorError, match="do not fit"):
        ospackages.parse_rpm_header(good[:-3])
    with pytest.raises(CollectorError, match="no release tag"):
        ospackages.parse_rpm_header(rpm_header("a", "1", None))
    assert ospackages.parse_rpm_header(good) == "a=1-2"


def test_rpm_file_that_is_not_sqlite(tmp_path: Path) -> None:
    """A damaged database is an error naming the file."""
    db = tmp_path / "var" / "lib" / "rpm" / "rpmdb.sqlite"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(CollectorError, match=r"cannot read .*rpmdb\.sqlite"):
        ospackages.read_os_packages(Roots.under(tmp_path))


def test_berkeley_db_rpm_is_unsupported(tmp_path: Path) -> None:
    """An rpm database in the old format is named, not silently ignored."""
    (tmp_path / "var" / "lib" / "rpm").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "rpm" / "Packages").write_bytes(b"\0" * 64)
    with pytest.raises(Unsupported, match=r"^/var/lib/rpm/Packages is an rpm database"):
        ospackages.read_os_packages(Roots.under(tmp_path))


def test_no_package_database_is_an_empty_list() -> None:
    """A tree without any package database (distroless) gives no packages."""
    assert ospackages.read_os_packages(ARM) == []


def test_oversize_database_is_not_read(tmp_path: Path) -> None:
    """A package database past 64 MB is refused by its size, before any read."""
    status = tmp_path / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    with status.open("wb") as fh:
        fh.truncate(65 << 20)  # sparse: no disk used
    with pytest.raises(CollectorError) as caught:
        ospackages.read_os_packages(Roots.under(tmp_path))
    assert str(caught.value) == f"{status} is {65 << 20} bytes, over 64 MB; not read"
