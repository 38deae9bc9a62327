"""The benchmarks run: `python -m bench --quick` in a tiny size produces every row.

Benchmarks are not tests: nothing here looks at a timing, only that each row
was measured and rendered (figures filled in, no crash, no wire breach).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from bench import run_all

TINY = dataclasses.replace(
    run_all.QUICK,
    sample_iterations=20,
    sample_rounds=1,
    overhead_s=2.0,
    overhead_warmup_s=0.5,
    overhead_rss_every_s=1.0,
    drain_messages=300,
    drain_single_puts=50,
    run_runs=1,
    paced_rate=2_000,
    paced_s=0.1,
    flat_lines=2_000,
    startup_runs=1,
    report_seconds=120,
    client_requests=5,
    upload_seconds=60,
)
EXPECTED = [
    "sampling cost, one full sample (all but the process tree)",
    "NVML cost, one sample of 1 GPU(s)",
    "NVML cost, one sample of 8 GPU(s)",
    "agent CPU at 1 s, offline (sampling and archive; no HTTP)",
    "agent CPU at 1 s, online",
    "requests per minute at 1 s, online",
    "agent RSS, offline",
    "agent RSS growth over the run",
    "client CPU per request (metric batch, loopback)",
    "upload of a 1 min archive at 1 sample/s: requests",
    "outbox write, put_many(1000)",
    "outbox drain into the stand-in",
    "run start-up until the command runs, online",
    "run start-up until the command runs, offline",
    "run output, paced",
    "run output, flat out",
    "report of a 2 min archive at 1 sample/s",
]


@pytest.mark.slow
def test_quick_mode_produces_every_row(tmp_path: Path) -> None:
    """Each benchmark gives its rows; the page names the machine; SDK and peers say why not."""
    rows: list[run_all.Row] = []
    page = run_all.run(TINY, mode="quick", on_row=rows.append)
    names = [r.measure for r in rows]
    assert names[: len(EXPECTED)] == EXPECTED
    assert all(r.ratio and r.figures for r in rows), rows
    assert all(r.met in ("yes", "no", "") for r in rows)
    assert "drained=True, 0 wire violations" in rows[11].figures
    sdk, peers = rows[len(EXPECTED)], rows[len(EXPECTED) + 1 :]
    assert sdk.measure == "agent CPU vs the comet_ml SDK's system monitor"
    assert [r.measure for r in peers] == [
        f"{p}'s system monitor at 1 s, offline (context)"
        for p in ("aim", "wandb", "mlflow", "clearml")
    ]
    for r in peers:  # not in this project's venv: each says so, and nothing ran
        assert r.ratio == "skipped" or r.ratio.endswith("x"), r
        assert r.ratio != "skipped" or r.figures.startswith("skipped: not installed ("), r
    for name in names:
        assert f"| {name} |" in page
    assert f"{os.cpu_count()} cores" in page and "Load average (1 min)" in page


def test_main_writes_the_table_it_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--output gets exactly the page printed on stdout; --only picks the benchmarks."""
    out = tmp_path / "RESULTS.md"
    assert run_all.main(["--quick", "--only", "report", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    assert printed.startswith("# comet-agent benchmarks (quick)")
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table) == 2  # the head and the one row
    assert table[1].startswith("| report of a 1 h archive at 1 sample/s |")
