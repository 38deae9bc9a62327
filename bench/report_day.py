"""Time `comet-agent report` on a generated 24-hour archive sampled every second.

Run: python bench/report_day.py [SECONDS]   (default 86400)
Prints the archive's size, the load and render times and the page size.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.report import render_html
from agent.report_data import load
from tests.offline_day import write_day


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 86_400
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        archive = write_day(Path(tmp) / "day.zip", seconds)
        zipped = archive.stat().st_size
        made = time.perf_counter()
        data = load(archive)
        loaded = time.perf_counter()
        page = render_html(data)
        done = time.perf_counter()
    print(
        f"archive: {seconds} s of samples, {data.lines:,} lines, "
        f"{zipped / 1e6:.1f} MB zipped "
        f"(generated in {made - started:.1f} s)"
    )
    print(
        f"load {loaded - made:.2f} s, render {done - loaded:.2f} s, "
        f"total {done - made:.2f} s; page {len(page.encode()) / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
