"""comet-agent report: a self-contained page (plots, facts, output tail) fast enough for a day."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent.api import bodies
from agent.archive import dump_line
from agent.commands.report import command
from agent.config import load_settings
from agent.delivery.sinks.offline import OfflineSink
from agent.report.svg import TOP, downsample, nice_scale
from tests.helpers import clean_env, run_agent
from tests.offline_day import EVIL, metric_line, write_day
from tests.offline_run import KEY, T0, ticking, typical_messages, write_archive


class Tags(HTMLParser):
    """Collect every tag and attribute name of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.update(name for name, _ in attrs)
        self.hrefs += [value or "" for name, value in attrs if name == "href"]


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
    """24 h at 1 s: under 5 MB; plots, facts and the escaped output tail are there (how long it
    takes is bench/report_day.py's figure, not a test's)."""
    archive = write_day(tmp_path / "day.zip")
    page = report(tmp_path, archive).read_text(encoding="utf-8")
    assert len(page.encode()) < 5_000_000
    assert page.count('<svg class="chart"') == 8  # + the per-core heatmap
    for caption in ("CPU utilisation", "CPU per core", "RAM used (of 256.0 GiB)",
                    "Load average (1 min)", "GPU utilisation", "GPU memory used", "GPU power",
                    "GPU temperature"):  # fmt: skip
        assert f"<figcaption>{caption}</figcaption>" in page
    assert "core 8: avg" in page  # per core, from the typed CPU bodies, hovered in the heatmap
    assert "average <small>avg 38, max 100</small>" in page
    # The one-second spike (tests.offline_day.SPIKE_AT_S) survives thinning: the band around
    # the average reaches 100 %, the top of the plot (y = report_svg.TOP).
    band = re.search(r'<path class="band" d="([^"]*)" style="fill:#4269d0;stroke:#4269d0"/>'
                     r'<path d="[^"]*" stroke="#4269d0"><title>average</title>', page)  # fmt: skip
    assert band is not None and f",{TOP:.1f}" in band[1]
    for fact in ("gpu-node-01", "NVIDIA H200", "140.4 GiB", "700.0 W", "refs/heads/main"):
        assert fact in page
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; &amp; done" in page
    assert EVIL not in page
    tags = Tags()
    tags.feed(page)
    assert "script" not in tags.tags
    assert "src" not in tags.attrs  # nothing to fetch: the page works offline
    assert all(href.startswith("#") for href in tags.hrefs)  # links only within the page


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
    assert "<span class='err' title='stderr'>boom</span>" in page


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


def test_png_keeps_matplotlibs_font_cache_notice_out_of_the_json_log(tmp_path: Path) -> None:
    """A first run builds matplotlib's font cache: its notice is not a line of our log."""
    pytest.importorskip("matplotlib", reason="the png extra (matplotlib) is not installed")
    archive = write_day(tmp_path / "short.zip", seconds=60, cores=4, more=True)
    env = clean_env(tmp_path, {"MPLCONFIGDIR": str(tmp_path / "fresh-mpl")})  # an empty cache
    result = run_agent(
        ["report", str(archive), "--png", "-o", str(tmp_path / "x.png"), "--log-format", "json"],
        env,
        timeout_s=180,
    )
    assert result.returncode == 0, result.stderr
    assert "font" not in result.stderr.lower(), result.stderr
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_legend_sits_above_the_plot(tmp_path: Path) -> None:
    """The legend is drawn above the axes (level with the title), not on the 100 % line."""
    matplotlib = pytest.importorskip("matplotlib", reason="the png extra is not installed")
    from agent.report.data import load
    from agent.report.panels import panels
    from agent.report.png import render_png

    archive = write_day(tmp_path / "short.zip", seconds=60, cores=4, more=True)
    data = load(archive)
    seen: list[tuple[float, float]] = []
    real_savefig = matplotlib.figure.Figure.savefig

    def spy(fig: object, *args: object, **kwargs: object) -> None:
        fig.canvas.draw()  # type: ignore[attr-defined]
        for ax in fig.axes:  # type: ignore[attr-defined]
            legend = ax.get_legend()
            if legend is not None:
                box = legend.get_window_extent()
                seen.append((box.y0, ax.get_window_extent().y1))
        real_savefig(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = spy
    try:
        render_png(data, panels(data), tmp_path / "x.png")
    finally:
        matplotlib.figure.Figure.savefig = real_savefig
    assert seen  # CPU (average, busiest core), disk, network have legends
    assert all(legend_bottom >= plot_top - 1 for legend_bottom, plot_top in seen), seen


def test_generated_lines_are_the_sinks_encoding() -> None:
    """The day generator's hand-formatted lines are byte-equal to dump_line's."""
    line = {
        "type": "metric_msg",
        "payload": {"local_timestamp": T0, "message_id": 7, "metric": {
            "epoch": None, "metricName": "sys.ram.used", "metricValue": 4.5, "step": None}},
    }  # fmt: skip
    assert metric_line(7, T0, "sys.ram.used", 4.5) == dump_line(line)


def test_value_axes_use_1_2_5_steps() -> None:
    """Ticks at 0/20/40…, 0/2/4/6, 0/100…: never 6.25 / 12.5 / 18.8 or 35.1 / 70.2 / 105."""
    assert nice_scale(100.0) == (100.0, 20.0)
    assert nice_scale(6.0) == (6.0, 2.0)  # 5 ticks of 1.2 would be the hand-made picker's
    assert nice_scale(25.0) == (25.0, 5.0)
    assert nice_scale(140.4) == (150.0, 50.0)
    assert nice_scale(0.0) == (1.0, 0.25)
    for value in (0.37, 3.3, 47.0, 105.0, 1234.5, 8e9):
        top, step = nice_scale(value)
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 9) in (1.0, 2.0, 5.0) and top >= value and top / step <= 10


def test_a_short_run_page_has_every_section_hover_values_and_a_table_of_contents(
    tmp_path: Path,
) -> None:
    """Disk, network and the watched process drawn; hover titles; TOC links to each chart."""
    archive = write_day(tmp_path / "short.zip", seconds=120, cores=8, more=True)
    page = report(tmp_path, archive).read_text(encoding="utf-8")
    for caption in ("Disk I/O", "Disk used (root)", "Network", "Process CPU",
                    "Process memory (RSS)", "CPU per core"):  # fmt: skip
        assert f"<figcaption>{caption}</figcaption>" in page
    anchors = re.findall(r"<a href='#([^']+)'>", page)
    assert len(anchors) >= 15
    for anchor in anchors:
        assert f"id='{anchor}'" in page or f'id="{anchor}"' in page, anchor
    # Hover: an invisible strip's <title> gives the time (UTC and since the start) and values.
    assert re.search(r"<title>2023-\d\d-\d\d \d\d:\d\d:\d\d UTC · \+\d+s\naverage: [\d.]+ %", page)
    assert re.search(r"used: [\d.]+ % \([\d.]+ GiB\)", page)  # RAM hovered in GiB too
    assert re.search(r'class="tick clock"[^>]*>\d\d:\d\d:\d\d</text>', page)  # wall-clock
    assert "No GPU metrics" not in page


def test_no_gpu_says_why_in_one_line(tmp_path: Path) -> None:
    """A run without GPU samples has a GPUs section with one line saying why."""
    archive = write_archive(tmp_path / "offline", typical_messages(samples=3)[:1]).path
    page = report(tmp_path, archive).read_text(encoding="utf-8")
    assert "<h2 id='g-gpus'>GPUs</h2><p class='muted'>No GPU metrics in this archive" in page


def test_facts_are_labelled_in_human_units_once(tmp_path: Path) -> None:
    """No raw keys (boot_time_ms, ram_total_bytes); kernel and the agent's version once."""
    messages = typical_messages(samples=1)
    extra = [("kernel", "6.1.0-18-amd64 #1 SMP Debian"), ("ram_total_bytes", 25_276_203_008),
             ("boot_time_ms", 1_796_352_324_000), ("comet_agent_version", "0.1.0")]  # fmt: skip
    messages = [m for m in messages if m[0] != "set-system-details"]
    details = bodies.system_details(additional=[{"key": k, "value": v} for k, v in extra])
    messages.insert(0, ("set-system-details", details, None))
    messages.append(("log-other", bodies.log_other("comet_agent_version", "0.1.0"), None))
    archive = write_archive(tmp_path / "offline", messages).path
    page = report(tmp_path, archive).read_text(encoding="utf-8")
    facts = page[page.index('<section id="facts"') : page.index('<section id="output"')]
    assert "boot_time_ms" not in facts and "ram_total_bytes" not in facts
    assert "<th>RAM</th><td>23.5 GiB</td>" in facts
    assert "<th>Booted</th><td>2026-12-04 02:45:24 UTC</td>" in facts
    assert facts.count("<th>Kernel</th>") == 1
    assert facts.count("0.1.0") == 1


def test_output_tail_collapses_carriage_return_frames_and_keeps_streams_apart(
    tmp_path: Path,
) -> None:
    """A progress bar's \\r frames are its last frame; stdout never takes stderr's colour."""
    writes = [("start\n", False)]
    writes += [(f"\r{i:3d}% |{'#' * (i // 10)}", False) for i in range(0, 101, 5)]
    writes += [("\n", False), ("warning: slow\n", True), ("epoch 1 ", False),
               ("oops\n", True), ("done\n", False)]  # fmt: skip
    lines = [bodies.output_line(text, stderr=err, offset=i, timestamp_ms=T0 + i)
             for i, (text, err) in enumerate(writes)]  # fmt: skip
    archive = write_archive(tmp_path / "offline", [("log-output", bodies.output(lines), None)]).path
    page = report(tmp_path, archive).read_text(encoding="utf-8")
    tail = page[page.index("<pre>") + 5 : page.index("</pre>")]
    assert tail.split("\n") == [
        "start",
        "100% |##########",
        "<span class='err' title='stderr'>warning: slow</span>",
        "<span class='err' title='stderr'>oops</span>",
        "epoch 1 done",
    ]
    assert "(the last 5 lines)" in page
    assert "\r" not in page


@pytest.mark.parametrize("samples", [1, 2, 3])
def test_a_run_of_one_two_or_three_samples_is_drawn(tmp_path: Path, samples: int) -> None:
    """Per-core heatmap and lines with too few samples to measure an interval: still a page."""
    archive = write_day(tmp_path / "tiny.zip", seconds=samples, cores=4, more=True)
    page = report(tmp_path, archive).read_text(encoding="utf-8")
    assert "<figcaption>CPU per core</figcaption>" in page
    assert "nan" not in page.lower().replace("nanosecond", "")
