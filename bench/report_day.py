"""Time `comet-agent report` on a generated 24-hour archive sampled every second.

Run: python bench/report_day.py [SECONDS]   (default 86400)
Prints the archive's size, the load and render times and the page size.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.report.data import load
from agent.report.page import render_html
from tests.offline_day import write_day


@dataclass(frozen=True)
class ReportDay:
    """Times to load and render one generated archive."""

    seconds: int  # of samples, one a second
    lines: int
    zipped_bytes: int
    generate_s: float
    load_s: float
    render_s: float
    page_bytes: int


def measure(seconds: int = 86_400) -> ReportDay:
    """Generate an archive of `seconds` one-second samples, then load and render it."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        archive = write_day(Path(tmp) / "day.zip", seconds)
        zipped = archive.stat().st_size
        made = time.perf_counter()
        data = load(archive)
        loaded = time.perf_counter()
        page = render_html(data)
        done = time.perf_counter()
    return ReportDay(
        seconds,
        data.lines,
        zipped,
        made - started,
        loaded - made,
        done - loaded,
        len(page.encode()),
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    r = measure(int(args[0]) if args else 86_400)
    print(
        f"archive: {r.seconds} s of samples, {r.lines:,} lines, "
        f"{r.zipped_bytes / 1e6:.1f} MB zipped "
        f"(generated in {r.generate_s:.1f} s)"
    )
    print(
        f"load {r.load_s:.2f} s, render {r.render_s:.2f} s, "
        f"total {r.load_s + r.render_s:.2f} s; page {r.page_bytes / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
