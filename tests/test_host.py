"""Host facts: parse functions on fixture text, readers on fixture trees, live host fields."""

from __future__ import annotations

import getpass
import platform
import socket
from pathlib import Path
from typing import NamedTuple

import pytest

from agent.collect import host
from agent.collect.base import Roots
from agent.errors import CollectorError, NoData

FIXTURES = Path(__file__).parent / "fixtures"
PLAIN = Roots.under(FIXTURES / "host-plain")
ARM = Roots.under(FIXTURES / "host-arm")
ALPINE = Roots.under(FIXTURES / "host-alpine")


def test_x86_cpuinfo_gives_model_and_both_core_counts() -> None:
    """The AMD host's cpuinfo names its model and has 2 logical on 2 physical cores."""
    assert host.read_cpu(PLAIN) == host.CpuInfo(model="AMD EPYC", logical=2, physical=2)


def test_arm_cpuinfo_names_the_part_and_sysfs_counts_cores() -> None:
    """ARM has no model name: implementer 0x41 part 0xd0c is a Neoverse-N1; cores from sysfs."""
    assert host.read_cpu(ARM) == host.CpuInfo(model="ARM Neoverse-N1", logical=4, physical=4)


def test_hyperthreads_share_a_physical_core() -> None:
    """Two logical CPUs on the same (physical id, core id) are one physical core."""
    text = (
        "processor\t: 0\nmodel name\t: Xeon\nphysical id\t: 0\ncore id\t\t: 0\n\n"
        "processor\t: 1\nmodel name\t: Xeon\nphysical id\t: 0\ncore id\t\t: 0\n\n"
        "processor\t: 2\nmodel name\t: Xeon\nphysical id\t: 1\ncore id\t\t: 0\n"
    )
    assert host.parse_cpuinfo(text) == host.CpuInfo("Xeon", logical=3, physical=2)


def test_old_arm_cpuinfo_falls_back_to_hardware() -> None:
    """A 32-bit ARM kernel gives only "Hardware" in a trailing block."""
    text = "processor\t: 0\nBogoMIPS\t: 38.40\n\nHardware\t: BCM2835\nRevision\t: a02082\n"
    assert host.parse_cpuinfo(text) == host.CpuInfo("BCM2835", logical=1, physical=None)


def test_unknown_arm_part_is_named_by_code() -> None:
    """An ARM part missing from the table still yields a stable name."""
    text = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xfff\n"
    assert host.parse_cpuinfo(text).model == "ARM part 0xfff"


@pytest.mark.parametrize("text", ["", "BogoMIPS\t: 1\n", "processor\t: \n"])
def test_cpuinfo_without_processors_is_an_error(text: str) -> None:
    """Empty or truncated cpuinfo raises, naming the file."""
    with pytest.raises(CollectorError, match="/proc/cpuinfo"):
        host.parse_cpuinfo(text)


def test_meminfo_total_is_bytes() -> None:
    """MemTotal is in kB in the file and in bytes for Comet."""
    assert host.read_ram_total(PLAIN) == 32_768_000 * 1024


@pytest.mark.parametrize("text", ["", "MemTotal:\n", "MemTotal:  12 MB\n", "MemFree: 1 kB\n"])
def test_meminfo_malformed(text: str) -> None:
    """A missing or truncated MemTotal line raises."""
    with pytest.raises(CollectorError, match="MemTotal"):
        host.parse_meminfo_total(text)


def test_boot_time_is_epoch_ms() -> None:
    """btime is seconds since the epoch; the fact is in ms."""
    assert host.read_boot_time_ms(PLAIN) == 1_795_900_000_000


@pytest.mark.parametrize("text", ["", "cpu 1 2 3\nbtime\n", "btime x\n"])
def test_btime_malformed(text: str) -> None:
    """A missing or truncated btime line raises."""
    with pytest.raises(CollectorError, match="btime"):
        host.parse_btime(text)


def test_kernel_is_release_and_version() -> None:
    """The kernel fact is what `uname -rv` prints."""
    assert host.read_kernel(PLAIN) == "6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0"


def test_kernel_missing_is_no_data() -> None:
    """A tree without /proc/sys/kernel reports absence, not a crash."""
    with pytest.raises(NoData):
        host.read_kernel(ARM)


def test_os_distribution_from_pretty_name() -> None:
    """PRETTY_NAME is the distribution's display name."""
    assert host.read_os_distribution(PLAIN) == "Debian GNU/Linux 12 (bookworm)"
    assert host.read_os_distribution(ALPINE) == "Alpine Linux v3.19"


def test_os_release_quoting() -> None:
    """Double quotes allow backslash escapes, single quotes are literal, comments are skipped."""
    text = '# comment\nNAME=\'My \\Linux\'\nVERSION="1 \\"beta\\""\nID=mine\n\n'
    fields = host.parse_os_release(text)
    assert fields == {"NAME": "My \\Linux", "VERSION": '1 "beta"', "ID": "mine"}
    assert host.os_distribution(fields) == 'My \\Linux 1 "beta"'


@pytest.mark.parametrize("text", ["", "# only a comment\n", "garbage\n"])
def test_os_release_malformed(text: str) -> None:
    """An os-release file with no KEY=value line raises."""
    with pytest.raises(CollectorError, match="os-release"):
        host.parse_os_release(text)


def test_os_release_without_names_raises() -> None:
    """An os-release file naming nothing gives no distribution."""
    with pytest.raises(CollectorError, match="PRETTY_NAME"):
        host.os_distribution(host.parse_os_release("ID=x\n"))


def test_os_release_falls_back_to_usr_lib(tmp_path: Path) -> None:
    """/usr/lib/os-release is read when /etc/os-release is absent (os-release(5))."""
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "os-release").write_text('PRETTY_NAME="Fedora Linux 40"\n')
    assert host.read_os_distribution(Roots.under(tmp_path)) == "Fedora Linux 40"


def test_plain_host_is_not_a_container() -> None:
    """No marker file, no hint in PID 1's cgroup, no orchestrator variable: no container."""
    assert host.read_container(PLAIN, env={}) is None


def test_container_markers(tmp_path: Path) -> None:
    """Each runtime's marker names it; Kubernetes wins over the runtime under it."""
    assert host.read_container(ALPINE, env={}) == "docker"
    assert host.read_container(ALPINE, env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "kubernetes"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").write_text("engine=podman-4.9\n")
    assert host.read_container(Roots.under(tmp_path), env={}) == "podman"


def test_container_from_init_environ_and_cgroup(tmp_path: Path) -> None:
    """PID 1's container= variable, then its cgroup paths, name the runtime."""
    proc1 = tmp_path / "proc" / "1"
    proc1.mkdir(parents=True)
    (proc1 / "cgroup").write_text("12:pids:/kubepods/besteffort/pod1234/abcd\n0::/\n")
    assert host.read_container(Roots.under(tmp_path), env={}) == "kubernetes"
    (proc1 / "environ").write_bytes(b"PATH=/bin\0container=systemd-nspawn\0HOME=/\0")
    assert host.read_container(Roots.under(tmp_path), env={}) == "systemd-nspawn"


@pytest.mark.parametrize(
    ("text", "runtime"),
    [
        ("0::/\n", None),
        ("", None),
        ("13:cpuset:/docker/4f1c2d3e\n", "docker"),
        ("0::/machine.slice/libpod-4f1c.scope\n", "podman"),
        ("1:name=systemd:/lxc/web01\n", "lxc"),
        ("0::/ecs/1234/abcd\n", "ecs"),
    ],
)
def test_cgroup_hints(text: str, runtime: str | None) -> None:
    """Known runtime names in cgroup paths."""
    assert host.parse_cgroup_container(text) == runtime


def test_init_environ_without_container() -> None:
    """An empty or absent container= means none."""
    assert host.parse_init_environ("PATH=/bin\0container=\0") is None
    assert host.parse_init_environ("") is None


@pytest.mark.parametrize(
    ("comet", "expected"),
    [
        ("https://www.comet.com/clientlib/", ("www.comet.com", 443)),
        ("http://127.0.0.1:8080/clientlib/", ("127.0.0.1", 8080)),
        ("http://comet.local/", ("comet.local", 80)),
        ("comet.example.com:9443", ("comet.example.com", 9443)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_split_host(comet: str, expected: tuple[str, int]) -> None:
    """A URL or host[:port] gives the host and the port to "connect" to."""
    assert host.split_host(comet) == expected


def test_split_host_without_a_host() -> None:
    """Nothing to connect to is an error naming the value."""
    with pytest.raises(CollectorError, match="'https://'"):
        host.split_host("https://")


def test_local_ip_towards_loopback() -> None:
    """Towards 127.0.0.1 the local address is 127.0.0.1; an unresolvable host gives None."""
    assert host.local_ip("127.0.0.1", 9) == "127.0.0.1"
    assert host.local_ip("no-such-host.invalid", 443, timeout_s=5) is None


class Addr(NamedTuple):
    family: int
    address: str


def test_interface_ips_sorted_v4_and_v6_loopback_included() -> None:
    """Link-layer addresses are dropped; IPv4 and IPv6 kept, deduplicated, sorted."""
    table = {
        "lo": [Addr(socket.AF_INET, "127.0.0.1"), Addr(socket.AF_INET6, "::1")],
        "eth0": [
            Addr(17, "02:fc:00:00:00:01"),
            Addr(socket.AF_INET, "192.0.2.2"),
            Addr(socket.AF_INET6, "fe80::1%eth0"),
        ],
        "eth1": [Addr(socket.AF_INET, "192.0.2.2")],
    }
    assert host.interface_ips(lambda: table) == ["127.0.0.1", "192.0.2.2", "::1", "fe80::1%eth0"]


def test_live_interface_ips_include_loopback() -> None:
    """On this machine the loopback address is listed, as the SDK's APIExperiment does."""
    assert "127.0.0.1" in host.interface_ips()


def test_host_fields_on_this_machine() -> None:
    """The host fields are what the SDK's sources give (wire §3.3)."""
    uname = platform.uname()
    assert host.host_fields("http://127.0.0.1:1/clientlib/") == {
        "hostname": socket.gethostname(),
        "ip": "127.0.0.1",
        "machine": uname.machine,
        "os": platform.platform(aliased=True),
        "os_release": uname.release,
        "os_type": "Linux",
        "processor": uname.processor,
        "user": getpass.getuser(),
    }


def test_user_unknown_when_no_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no login variable and a uid missing from the password database: "unknown"."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid: int) -> object:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr("pwd.getpwuid", no_entry)
    assert host.user_name() == "unknown"
