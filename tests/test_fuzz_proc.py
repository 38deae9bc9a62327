"""Fuzzing /proc, /sys and cgroup files: odd content gives a value or one CollectorError.

Every pure ``parse_*`` of agent/collect/ is fed random text and near-misses
of the real files in tests/fixtures/ (lines cut short, fields added or
dropped, numbers made huge, negative, fractional or non-ASCII). The property:
it returns a value of its documented type (and range: no negative memory, no
NaN load) or raises CollectorError (NoData included) whose message is one
line; never ValueError, IndexError, KeyError, OverflowError or another.

The samplers are then run on whole fixture trees, copied to a temp directory
with one file replaced by such content, before the sampler starts or between
two samples: each ``collect()`` gives a Sample of finite, non-negative
figures (percentages at most 100), or a CollectorError.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.collect import cgroup, host, load, memory, network, ospackages, packages, process
from agent.collect.base import Roots, Sample
from agent.collect.cpu import CpuSampler
from agent.collect.load import LoadSampler
from agent.collect.memory import MemorySampler
from agent.errors import CollectorError
from tests.fuzzing import fuzz
from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
TREES = ("host-plain", "cgroup2-limited", "cgroup1")


def fixture(path: str) -> str:
    """The text of one fixture file."""
    return (FIXTURES / path).read_text(encoding="utf-8")


def one_line(exc: Exception) -> bool:
    """Whether an error's message is one non-empty line."""
    text = str(exc)
    return bool(text) and len(text.splitlines()) == 1


def attempt(fn: Callable[..., object], *args: object) -> tuple[object, CollectorError | None]:
    """Call `fn`; return what it gave, or the CollectorError it raised (any other goes up)."""
    try:
        return fn(*args), None
    except CollectorError as exc:
        return None, exc


# -- input: random text and near-misses of real files --------------------------------------------

ODD_NUMBERS = st.sampled_from(
    ["-1", "-9223372036854775808", "18446744073709551616", "9" * 30, "9" * 5000, "1e400",
     "nan", "inf", "-0", "0", "1.5", "٣", "0x10", "1_000", ""]
)  # fmt: skip
ODD_TEXT = st.text(max_size=12) | st.sampled_from(
    ["\x00", "\\", "\\x", "\\u12", "\\040", "\\000", ":", " - ", "é"]
)


@st.composite
def near_miss(draw: st.DrawFn, sample: str) -> str:
    """`sample` with a few random edits: numbers swapped for odd ones, cuts, junk, lost lines."""
    text = sample
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 5))
        if op == 0:  # replace one number
            numbers = list(re.finditer(r"-?\d+(\.\d+)?", text))
            if numbers:
                m = draw(st.sampled_from(numbers))
                text = text[: m.start()] + draw(ODD_NUMBERS) + text[m.end() :]
        elif op == 1:  # cut short
            text = text[: draw(st.integers(0, len(text)))]
        elif op == 2:  # insert junk
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(ODD_TEXT) + text[at:]
        elif op == 3:  # drop or duplicate a line
            lines = text.splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines[i] = "" if draw(st.booleans()) else lines[i] * 2
                text = "".join(lines)
        elif op == 4:  # add a field to a line
            lines = text.splitlines()
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines[i] += " " + draw(ODD_TEXT | ODD_NUMBERS)
                text = "\n".join(lines)
        else:  # a word swapped for another
            words = text.split()
            if words:
                word = draw(st.sampled_from(words))
                text = text.replace(word, draw(ODD_TEXT | ODD_NUMBERS), 1)
    return text


def inputs(*samples: str) -> st.SearchStrategy[str]:
    """Random text, and near-misses of the given real contents."""
    return st.one_of(
        st.text(max_size=80),
        st.sampled_from(samples),
        st.sampled_from(samples).flatmap(near_miss),
    )


# -- the documented types of each parser -----------------------------------------------------------


def is_count(value: object) -> bool:
    """A whole number >= 0 that a 64-bit kernel counter can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def is_amount(value: object) -> bool:
    """A finite number >= 0."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def check_proc_cgroup(out: object) -> bool:
    assert isinstance(out, dict) and out
    return all(isinstance(k, str) and v.startswith("/") for k, v in out.items())


def check_mountinfo(out: object) -> bool:
    assert isinstance(out, list)
    return all(m.version in (cgroup.V1, cgroup.V2) and isinstance(m.mount_point, str) for m in out)


def check_quota(out: object) -> bool:
    return out is None or (isinstance(out, float) and math.isfinite(out) and out > 0)


def check_memory(out: object) -> bool:
    assert isinstance(out, memory.Memory)
    assert (
        out.total > 0 and 0 <= out.available <= out.total and out.used == out.total - out.available
    )
    return 0 <= out.percent <= 100


def check_keyed(out: object) -> bool:
    assert isinstance(out, dict) and out
    return all(isinstance(k, str) and isinstance(v, int) and abs(v) < 2**64 for k, v in out.items())


def check_cpuinfo(out: object) -> bool:
    assert isinstance(out, host.CpuInfo)
    return out.logical >= 1 and (out.physical is None or out.physical >= 1)


def check_packages(out: object) -> bool:
    assert isinstance(out, list) and out == sorted(out)
    return all(isinstance(p, str) and "=" in p for p in out)


def check_os_release(out: object) -> bool:
    assert isinstance(out, dict) and out
    try:
        name = host.os_distribution(out)
    except CollectorError as exc:
        return one_line(exc)
    return isinstance(name, str) and bool(name)


Parser = tuple[Callable[[str], object], st.SearchStrategy[str], Callable[[object], bool]]
PARSERS: dict[str, Parser] = {
    "proc_cgroup": (
        cgroup.parse_proc_cgroup,
        inputs(fixture("cgroup1/proc/self/cgroup"), fixture("host-plain/proc/self/cgroup")),
        check_proc_cgroup,
    ),
    "mountinfo": (
        cgroup.parse_mountinfo,
        inputs(
            fixture("cgroup1/proc/self/mountinfo"),
            fixture("host-plain/proc/self/mountinfo"),
            "1 2 0:1 / /sys/fs/cgroup\\x rw - cgroup2 cgroup2 rw\n",  # not an octal escape
            "1 2 0:1 /a\\040b /sys/fs/cgroup\\u1234 rw - cgroup cgroup rw,cpu\n",
        ),
        check_mountinfo,
    ),
    "cpu_max": (
        cgroup.parse_cpu_max,
        inputs("250000 100000\n", "max 100000\n", "1 " + "9" * 4000, "9" * 400 + " 1"),
        check_quota,
    ),
    "cfs_quota": (
        lambda text: cgroup.parse_cfs_quota(*[*text.split("|", 1), None][:2]),  # type: ignore[arg-type]
        inputs("150000\n|100000\n", "-1\n|100000\n", "1\n|1\n"),
        check_quota,
    ),
    "memory_limit": (
        cgroup.parse_memory_limit,
        inputs("4294967296\n", "max\n", "9223372036854771712\n"),
        lambda out: out is None or (is_count(out) and out < 2**62),
    ),
    "int": (
        lambda text: cgroup.parse_int(text, "memory.current"),
        inputs("1610612736\n", "-1\n"),
        lambda out: isinstance(out, int) and -(2**63) <= out < 2**64,  # -1: cfs_quota_us
    ),
    "keyed": (
        lambda text: cgroup.parse_keyed(text, "memory.stat"),
        inputs(
            fixture("cgroup1/sys/fs/cgroup/memory/memory.stat"),
            fixture("cgroup2-limited/sys/fs/cgroup/cpu.stat"),
        ),
        check_keyed,
    ),
    "psi": (
        cgroup.parse_psi_some_avg10,
        inputs(fixture("cgroup2-limited/sys/fs/cgroup/cpu.pressure"), "some avg10=nan avg60=0\n"),
        is_amount,
    ),
    "meminfo": (memory.parse_meminfo, inputs(fixture("host-plain/proc/meminfo")), check_memory),
    "loadavg": (
        load.parse_loadavg,
        inputs(fixture("host-plain/proc/loadavg"), "nan 1 1"),
        is_amount,
    ),
    "cpuinfo": (
        host.parse_cpuinfo,
        inputs(fixture("host-plain/proc/cpuinfo"), fixture("host-arm/proc/cpuinfo")),
        check_cpuinfo,
    ),
    "meminfo_total": (
        host.parse_meminfo_total,
        inputs(fixture("host-plain/proc/meminfo")),
        is_count,
    ),
    "btime": (host.parse_btime, inputs(fixture("host-plain/proc/stat")), is_count),
    "os_release": (
        host.parse_os_release,
        inputs(fixture("host-plain/etc/os-release"), fixture("host-alpine/etc/os-release")),
        check_os_release,
    ),
    "init_environ": (
        host.parse_init_environ,
        inputs("HOME=/\0container=podman\0", "TERM=linux\0"),
        lambda out: out is None or isinstance(out, str),
    ),
    "cgroup_container": (
        host.parse_cgroup_container,
        inputs(fixture("host-plain/proc/1/cgroup"), "0::/kubepods/pod1/abc\n"),
        lambda out: out is None or isinstance(out, str),
    ),
    "nspid": (
        process.parse_nspid,
        inputs(fixture("host-plain/proc/4242/status"), fixture("host-plain/proc/4300/status")),
        lambda out: isinstance(out, tuple) and bool(out) and all(isinstance(p, int) for p in out),
    ),
    "dpkg": (
        ospackages.parse_dpkg_status,
        inputs(fixture("host-plain/var/lib/dpkg/status")),
        check_packages,
    ),
    "apk": (
        ospackages.parse_apk_installed,
        inputs(fixture("host-alpine/lib/apk/db/installed")),
        check_packages,
    ),
    "probe_output": (
        packages.parse_probe_output,
        inputs(
            json.dumps(
                {
                    "executable": "/usr/bin/python3",
                    "version": "3.11.7",
                    "version_verbose": "3.11.7 (main)",
                    "packages": ["a==1", "B==2"],
                }
            ),
            "warning\n{" + "[" * 5000,
        ),
        lambda out: (
            isinstance(out, packages.PythonEnv)
            and out.packages == packages.sort_packages(out.packages)
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@fuzz(120)
@given(data=st.data())
def test_parsers_return_their_type_or_a_collector_error(name: str, data: st.DataObject) -> None:
    """Random and near-miss content: the documented type and range, or one-line CollectorError."""
    parse, texts, check = PARSERS[name]
    text = data.draw(texts, label="text")
    out, error = attempt(parse, text)
    if error is not None:
        assert one_line(error), str(error)
    else:
        assert check(out), out


RPM_TAGS = st.sampled_from([1000, 1001, 1002, 63, 1003, -1])


@st.composite
def rpm_blobs(draw: st.DrawFn) -> bytes:
    """rpm headers: a random index (tag, type, offset, count) over random data, or raw bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    data = draw(st.binary(max_size=40)) + b"\0"
    entries = draw(
        st.lists(
            st.tuples(
                RPM_TAGS, st.sampled_from([6, 8, 9, 4]), st.integers(-5, 50), st.integers(0, 3)
            ),
            max_size=5,
        )
    )
    il = draw(st.sampled_from([len(entries), len(entries) + 1, 2**32 - 1]))
    dl = draw(st.sampled_from([len(data), len(data) + 10, 0]))
    index = b"".join(
        t.to_bytes(4, "big", signed=True) + k.to_bytes(4, "big", signed=True)
        + o.to_bytes(4, "big", signed=True) + c.to_bytes(4, "big", signed=True)
        for t, k, o, c in entries
    )  # fmt: skip
    return il.to_bytes(4, "big") + dl.to_bytes(4, "big") + index + data


@fuzz(200)
@given(blob=rpm_blobs())
def test_rpm_header_gives_name_version_release_or_a_collector_error(blob: bytes) -> None:
    """Random rpm header blobs: "name=version-release" or a one-line CollectorError."""
    out, error = attempt(ospackages.parse_rpm_header, blob)
    if error is not None:
        assert one_line(error), str(error)
    else:
        assert isinstance(out, str) and "=" in out and "-" in out


@fuzz(200)
@given(
    line=st.binary(max_size=40) | st.sampled_from([b"#!", b"#! ", b"#!/usr/bin/env -S", b"#!env"])
)
def test_shebang_gives_a_command_or_none(line: bytes) -> None:
    """Any first line of a script: a non-empty command or None, never an error."""
    out = packages.parse_shebang(line)
    assert out is None or (isinstance(out, list) and out and all(isinstance(w, str) for w in out))


COUNTERS = st.integers(0, 2**64 - 1)


@fuzz(200)
@given(
    prev=st.tuples(COUNTERS, COUNTERS),
    now=st.tuples(COUNTERS, COUNTERS),
    elapsed_ms=st.integers(-(2**40), 2**40),
)
def test_byte_rates_are_none_or_finite_and_non_negative(
    prev: tuple[int, int], now: tuple[int, int], elapsed_ms: int
) -> None:
    """Two readings of 64-bit counters: per-second rates >= 0, or None (a reset, no time)."""
    rates = network.byte_rates(prev, now, elapsed_ms)
    assert rates is None or (len(rates) == 2 and all(is_amount(r) for r in rates))


# -- the samplers on whole trees with one file replaced ---------------------------------------


def tree_files(tree: str) -> list[str]:
    """The files under proc/ and sys/ of a fixture tree, relative to it."""
    base = FIXTURES / tree
    return sorted(
        str(p.relative_to(base))
        for p in base.rglob("*")
        if p.is_file() and p.parts[len(base.parts)] in ("proc", "sys")
    )


TREE_FILES = {tree: tree_files(tree) for tree in TREES}


def check_sample(sample: Sample) -> None:
    """Finite, non-negative figures; percentages at most 100; one-line event messages."""
    for name, value in sample.metrics.items():
        assert is_amount(value), (name, value)
        if ".percent." in name or name.endswith(".percent"):
            assert value <= 100, (name, value)
    for event in sample.events:
        assert len(event.message.splitlines()) == 1


def run(make: Callable[[], object], swap: Callable[[], None] | None) -> None:
    """Build a sampler, maybe change a file, then collect twice; CollectorError is allowed."""
    try:
        sampler = make()
    except CollectorError as exc:
        pytest.fail(f"building the sampler raised, it should wait for collect(): {exc}")
    if swap is not None:
        swap()
    for _ in range(2):
        sample, error = attempt(sampler.collect)  # type: ignore[attr-defined]
        if error is not None:
            assert one_line(error), str(error)
        else:
            assert isinstance(sample, Sample)
            check_sample(sample)


@fuzz(150)
@given(data=st.data(), tree=st.sampled_from(TREES), before=st.booleans())
def test_samplers_on_a_tree_with_one_odd_file(data: st.DataObject, tree: str, before: bool) -> None:
    """One file of a fixture tree replaced (before the samplers start, or between samples)."""
    name = data.draw(st.sampled_from(TREE_FILES[tree]), label="file")
    original = (FIXTURES / tree / name).read_text(encoding="utf-8")
    content = data.draw(inputs(original), label="content")
    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp) / tree
        shutil.copytree(FIXTURES / tree, base)
        roots = Roots.under(base)

        def swap() -> None:
            (base / name).write_text(content, encoding="utf-8")

        if before:
            swap()
        host_cpus = host_cpu_count(roots)
        clock = iter(range(1_700_000_000_000, 1_700_000_100_000, 10_000))
        percent = [25.0] * host_cpus
        run(
            lambda: CpuSampler(roots=roots, cpu_percent=lambda: percent, clock=lambda: next(clock)),
            None if before else swap,
        )
        (base / name).write_text(original if not before else content, encoding="utf-8")
        run(lambda: MemorySampler(roots=roots), None if before else swap)
        (base / name).write_text(original if not before else content, encoding="utf-8")
        run(lambda: LoadSampler(roots=roots), None if before else swap)
        for read in (cgroup.describe, host.read_cpu, host.read_ram_total, process.read_pid_map):
            _, error = attempt(read, roots)
            assert error is None or one_line(error), str(error)


def host_cpu_count(roots: Roots) -> int:
    """The fixture host's CPU count (psutil's list length in the samplers' tests)."""
    return max(1, cgroup.host_cpus(roots))


# -- regressions found by the properties above ---------------------------------------------------


def copy_tree(tmp_path: Path, tree: str) -> Path:
    """A writable copy of a fixture tree."""
    base = tmp_path / tree
    shutil.copytree(FIXTURES / tree, base)
    return base


def test_mountinfo_backslashes_that_are_not_octal_escapes_stay() -> None:
    """Only \\ooo escapes are decoded; "\\x" or "\\u1234" is not a UnicodeError."""
    [one, two] = cgroup.parse_mountinfo(
        "1 2 0:1 / /sys/fs/cgroup\\x rw - cgroup2 cgroup2 rw\n"
        "3 2 0:2 /a\\040b /sys/fs/cgroup\\u1234 rw - cgroup cgroup rw,cpu\n"
    )
    assert (one.mount_point, two.root, two.mount_point) == (
        "/sys/fs/cgroup\\x",
        "/a b",
        "/sys/fs/cgroup\\u1234",
    )


def test_a_nul_in_a_mount_point_is_a_collector_error(tmp_path: Path) -> None:
    """A mountinfo naming "\\000" gives a path with NUL: CollectorError, not ValueError."""
    base = copy_tree(tmp_path, "cgroup2-limited")
    mountinfo = base / "proc" / "self" / "mountinfo"
    mountinfo.write_text(mountinfo.read_text().replace("/sys/fs/cgroup ", "/sys/fs/cgroup\\000 "))
    with pytest.raises(CollectorError, match="the path holds a NUL byte"):
        cgroup.read_memory_limit(cgroup.find_cgroup(Roots.under(base)))


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (cgroup.parse_psi_some_avg10, "some avg10=nan avg60=0.00\n"),
        (cgroup.parse_psi_some_avg10, "some avg10=-1.00 avg60=0.00\n"),
        (load.parse_loadavg, "nan 0.5 0.5 1/100 42\n"),
        (load.parse_loadavg, "-1.00 0.5 0.5 1/100 42\n"),
        (memory.parse_meminfo, "MemTotal: -1 kB\nMemAvailable: 10 kB\n"),
        (memory.parse_meminfo, "MemTotal: 18446744073709551616 kB\n"),
        (host.parse_meminfo_total, "MemTotal: " + "9" * 5000 + " kB\n"),
        (host.parse_meminfo_total, "MemTotal: 18446744073709551616 kB\n"),
        (cgroup.parse_cpu_max, "9" * 400 + " 1\n"),
        (cgroup.parse_cpu_max, "1 " + "9" * 4000 + "\n"),
        (lambda text: cgroup.parse_int(text, "memory.current"), "18446744073709551616\n"),
        (lambda text: cgroup.parse_keyed(text, "memory.stat"), "cache 18446744073709551616\n"),
        (packages.parse_probe_output, "{" + "[" * 100_000),
    ],
)
def test_impossible_values_are_collector_errors(parse: Callable[[str], object], text: str) -> None:
    """NaN, negative, past-64-bit or absurdly nested values: CollectorError, never sent."""
    with pytest.raises(CollectorError):
        parse(text)


def test_cpu_sampler_starts_with_a_damaged_cpu_max(tmp_path: Path) -> None:
    """A cpu.max that cannot be parsed at start-up fails collect(), not the agent's start."""
    base = copy_tree(tmp_path, "cgroup2-limited")
    (base / "sys" / "fs" / "cgroup" / "cpu.max").write_text(":\n")
    sampler = CpuSampler(roots=Roots.under(base), cpu_percent=lambda: [0.0] * 16, clock=lambda: 1)
    with pytest.raises(CollectorError, match=r"cpu\.max: unexpected content ':"):
        sampler.collect()


def test_throttling_counters_going_back_give_no_throttling_rate(tmp_path: Path) -> None:
    """cpu.stat's throttled_usec going back: no throttled_s (never negative) that sample."""
    base = copy_tree(tmp_path, "cgroup2-limited")
    stat = base / "sys" / "fs" / "cgroup" / "cpu.stat"
    clock = iter([1_000, 11_000])
    sampler = CpuSampler(
        roots=Roots.under(base), cpu_percent=lambda: [0.0] * 16, clock=lambda: next(clock)
    )
    stat.write_text("usage_usec 7200000000\n")  # the throttling lines gone: counters read as 0
    metrics = sampler.collect().metrics
    assert "sys.cpu.percent.avg" in metrics
    assert "sys.cpu.throttled_s" not in metrics and "sys.cpu.throttled_percent" not in metrics


def test_negative_oom_kill_count_is_unsupported(tmp_path: Path) -> None:
    """memory.events' "oom_kill -1" is not sent: sys.ram.oom_kills is named unsupported."""
    base = copy_tree(tmp_path, "cgroup2-limited")
    (base / "sys" / "fs" / "cgroup" / "memory.events").write_text("oom_kill -1\n")
    sample = MemorySampler(roots=Roots.under(base)).collect()
    assert "sys.ram.oom_kills" not in sample.metrics
    assert "sys.ram.oom_kills" in sample.unsupported


def test_memtotal_without_a_number_and_a_too_long_cgroup_path(tmp_path: Path) -> None:
    """ "MemTotal:" alone and a cgroup path past NAME_MAX: the facts fall back, no crash."""
    base = copy_tree(tmp_path, "cgroup2-limited")
    (base / "proc" / "meminfo").write_text("MemTotal:\n")
    (base / "proc" / "self" / "cgroup").write_text("0::/" + "9" * 1000 + "\n")
    facts = dict(cgroup.describe(Roots.under(base)))
    assert facts["cgroup_path"] == "/" + "9" * 1000
    assert facts["cgroup_memory_view"] == "cgroup"  # a limit, and no host total to compare
