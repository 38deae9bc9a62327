"""Human units: what sample, sysinfo, the report and the upload progress line print."""

from __future__ import annotations

from agent import human


def test_sizes_are_binary_and_rates_decimal() -> None:
    """Sizes as free -h (GiB), rates as iostat (MB/s)."""
    assert human.size(512) == "512 B"
    assert human.size(30_000) == "29.3 KiB"
    assert human.size(25_276_203_008) == "23.5 GiB"
    assert human.rate(0) == "0 B/s"
    assert human.rate(1_234_567) == "1.2 MB/s"


def test_metric_values_by_name() -> None:
    """The name says the unit: bytes, percent, milliwatts, bytes per second."""
    assert human.metric("sys.ram.used", 587_644_928) == "560.4 MiB"
    assert human.metric("sys.cpu.percent.avg", 5.55) == "5.5 %"
    assert human.metric("sys.gpu.0.power_usage", 215_000) == "215.0 W"
    assert human.metric("sys.gpu.0.temperature", 61) == "61 °C"
    assert human.metric("sys.disk.read_bps", 4087.8) == "4.1 kB/s"
    assert human.metric("sys.process.count", 12) == "12"


def test_stamps_and_info_labels() -> None:
    """Epoch ms is wall-clock UTC; implausible stamps are 'unknown', never an exception."""
    assert human.stamp(1_796_352_324_000) == "2026-12-04 02:45:24 UTC"
    assert human.stamp(10**18) == "unknown"
    assert human.info("ram_total_bytes", 25_276_203_008) == ("RAM", "23.5 GiB")
    assert human.info("boot_time_ms", 1_796_352_324_000) == ("Booted", "2026-12-04 02:45:24 UTC")
    assert human.info("some_new_key", 3) == ("Some new key", "3")
    assert human.duration(200) == "3 min 20 s"


def test_values_past_float_range_do_not_raise() -> None:
    """A damaged archive's 10**400 is shown, not an OverflowError."""
    assert human.size(10**400) == "inf"
    assert human.info("ram_total_bytes", 10**400) == ("RAM", "inf")
