"""comet-agent report: a self-contained page (plots, facts, output tail) fast enough for a day."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent.api import bodies
from agent.archive import dump_line
from agent.config import load_settings
from agent.report import command
from agent.report_svg import TOP, downsample
from agent.sinks.offline import OfflineSink
from tests.helpers import clean_env, run_agent
from tests.offline_day import EVIL, metric_line, write_day
from tests.offline_run import KEY, T0, ticking, typical_messages, write_archive


class Tags(HTMLParser):
    """Collect every tag and attribute name of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.update(name for name, _ in attrs)


def report(tmp_path: Path, path: Path | None, *, png: bool = False) -> Path:
    settings = load_settings(
        environ={"COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline")}, home=tmp_path, cwd=tmp_path
    )
    output = tmp_path / ("report.png" if png else "report.html")
    args = argparse.Namespace(path=str(path) if path else None, output=str(output), png=png)
    assert command(args, settings) == 0
    return output


@pytest.mark.slow
def test_a_day_at_one_second_renders_fast_small_and_safe(tmp_path: Path) -> None:
    """24 h at 1 s: under 10 s and 5 MB; plots, facts and the escaped output tail are there."""
    archive = write_day(tmp_path / "day.zip")
    started = time.perf_counter()
    page_path = report(tmp_path, archive)
    elapsed_s = time.perf_counter() - started
    page = page_path.read_text(encoding="utf-8")
    assert elapsed_s < 10, elapsed_s
    assert len(page.encode()) < 5_000_000
    assert page.count('<svg class="chart"') == 7  # CPU, RAM, load, GPU util/memory/power/temp
    for caption in ("CPU utilisation", "RAM", "Load average (1 min)", "GPU utilisation",
                    "GPU memory used", "GPU power", "GPU temperature"):  # fmt: skip
        assert f"<figcaption>{caption}</figcaption>" in page
    assert "core 8" in page  # per core, from the typed CPU bodies
    assert "average <small>avg 38, max 100</small>" in page
    # The one-second spike (tests.offline_day.SPIKE_AT_S) survives thinning: a point at 100 %,
    # the top of the plot (y = report_svg.TOP), is drawn.
    average = re.search(r'<path d="([^"]*)" stroke="[^"]*"><title>average</title>', page)
    assert average is not None and f",{TOP:.1f}" in average[1]
    for fact in ("gpu-node-01", "NVIDIA H200", "140.4 GiB", "700.0 W", "refs/heads/main"):
        assert fact in page
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; &amp; done" in page
    assert EVIL not in page
    tags = Tags()
    tags.feed(page)
    assert "script" not in tags.tags
    assert not tags.attrs & {"src", "href"}  # nothing to fetch: the page works offline


def test_downsample_keeps_each_buckets_extremes() -> None:
    """A lone spike and a lone dip survive thinning 10,000 points to 100."""
    times = list(range(10_000))
    values = [50.0] * 10_000
    values[1234], values[8765] = 100.0, 0.0
    t, v = downsample(times, values, 100)
    assert len(t) <= 100
    assert (1234, 100.0) in zip(t, v, strict=True)
    assert (8765, 0.0) in zip(t, v, strict=True)
    assert t == sorted(t)


def test_report_reads_a_partial_directory_of_a_running_agent(tmp_path: Path) -> None:
    """A run still going (partial directory, no PATH given): the newest archive is drawn."""
    sink = OfflineSink(
        tmp_path / "offline", KEY, workspace="ws", project="p", start_ms=T0, clock=ticking()
    )
    for i in range(5):
        item = bodies.metric_item("sys.cpu.percent.avg", 10.0 * i, T0 + 1000 * i)
        sink.send("log-metric-batch", KEY, bodies.metric_batch([item]), None)
    lines = [bodies.output_line("boom", stderr=True, offset=0, timestamp_ms=T0)]
    sink.send("log-output", KEY, bodies.output(lines), None)
    page = report(tmp_path, None).read_text()
    sink.close()
    assert "<figcaption>CPU utilisation</figcaption>" in page
    assert "average <small>avg 20, max 40</small>" in page
    assert "<span class='err'>boom</span>" in page


def test_output_tail_is_the_last_200_lines(tmp_path: Path) -> None:
    """Only the last 200 lines of output are shown, in order."""
    messages = [
        ("log-output", bodies.output([bodies.output_line(f"line {i}\n", stderr=False, offset=i,
                                                          timestamp_ms=T0 + i)]), None)
        for i in range(250)
    ]  # fmt: skip
    archive = write_archive(tmp_path / "offline", messages).path  # type: ignore[arg-type]
    page = report(tmp_path, archive).read_text()
    assert "line 49\n" not in page and "line 50\n" in page and "line 249" in page
    assert page.index("line 50\n") < page.index("line 249")


def test_context_and_sdk_layout_metric_lines_are_read(tmp_path: Path) -> None:
    """A metric line with a context (sorted first) is read; non-system metrics are left out."""
    archive = write_archive(tmp_path / "offline", typical_messages(samples=3)).path
    page = report(tmp_path, archive).read_text()
    assert "<figcaption>Load average (1 min)</figcaption>" in page  # its lines carry a context
    assert "load <small>avg 1.25, max 1.25</small>" in page


def test_missing_archive_is_a_usage_error(tmp_path: Path) -> None:
    """No such path, or no archive anywhere: exit 2 with the fix."""
    env = clean_env(tmp_path, {"COMET_OFFLINE_DIRECTORY": str(tmp_path / "empty")})
    result = run_agent(["report", str(tmp_path / "nope.zip")], env)
    assert (result.returncode, result.stderr.strip()) == (
        2,
        f"comet-agent: no such archive: {tmp_path / 'nope.zip'}; "
        "give a .zip or a .partial directory",
    )
    result = run_agent(["report"], env)
    assert result.returncode == 2
    assert "holds no archive" in result.stderr


def test_png_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    """--png with matplotlib missing: one line, exit 2, the pip command."""
    archive = write_archive(tmp_path / "offline", typical_messages(samples=1)).path
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # as if it were not installed
        "from agent.cli import main\n"
        f"raise SystemExit(main(['report', {str(archive)!r}, '--png', '-o', 'x.png']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=clean_env(tmp_path),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "comet-agent: --png needs matplotlib: pip install 'comet-agent[png]'\n"
    )
    assert not (tmp_path / "x.png").exists()


def test_png_is_an_image_when_matplotlib_is_there(tmp_path: Path) -> None:
    """With the png extra installed, --png writes a PNG file."""
    pytest.importorskip("matplotlib", reason="the png extra (matplotlib) is not installed")
    archive = write_archive(tmp_path / "offline", typical_messages(samples=3)).path
    image = report(tmp_path, archive, png=True)
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generated_lines_are_the_sinks_encoding() -> None:
    """The day generator's hand-formatted lines are byte-equal to dump_line's."""
    line = {
        "type": "metric_msg",
        "payload": {"local_timestamp": T0, "message_id": 7, "metric": {
            "epoch": None, "metricName": "sys.ram.used", "metricValue": 4.5, "step": None}},
    }  # fmt: skip
    assert metric_line(7, T0, "sys.ram.used", 4.5) == dump_line(line)
