"""``comet-agent report --png``: the report's charts as one static image, drawn with matplotlib.

matplotlib is an optional extra (``pip install 'comet-agent[png]'``): it is
imported only here, only when asked for, and through importlib so the agent
type-checks without it.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.report_svg import PALETTE, downsample, tick_label, tick_step_s

if TYPE_CHECKING:
    from agent.report import Panel
    from agent.report_data import RunData


def render_png(data: RunData, panels: list[Panel], output: Path) -> None:
    """Draw `panels` one above the other into a PNG at `output`."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")  # no display: render to a file
    plt: Any = importlib.import_module("matplotlib.pyplot")
    ticker: Any = importlib.import_module("matplotlib.ticker")
    rows = max(1, len(panels))
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.3 * rows + 0.8), squeeze=False)
    stamps = [
        t
        for p in panels
        for line in p.lines
        if line.times
        for t in line.times[:: len(line.times) - 1 or 1]
    ]
    t0, t1 = (min(stamps), max(stamps)) if stamps else (0, 1)
    for ax, panel in zip(axes[:, 0], panels, strict=False):
        for i, line in enumerate(panel.lines):
            times, values = downsample(line.times, line.values, 1000)
            ax.plot(
                [(t - t0) / 1000 for t in times],
                values,
                color=PALETTE[i % len(PALETTE)],
                linewidth=1.0,
                label=line.label,
                zorder=len(panel.lines) - i,  # the first line (the average, say) on top
            )
        ax.set_title(panel.title, loc="left", fontsize=10, fontweight="bold")
        ax.set_ylabel(panel.unit, fontsize=9)
        ax.set_ylim(bottom=0, top=panel.y_max)
        ax.grid(True, color="#e9ecf2", linewidth=0.8)
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, max(1, t1 - t0) / 1000)
        ax.xaxis.set_major_locator(ticker.MultipleLocator(tick_step_s(t1 - t0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda s, _: tick_label(s)))
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if 1 < len(panel.lines) <= 10:
            ax.legend(fontsize=7, loc="upper right", frameon=False, ncol=min(5, len(panel.lines)))
    if not panels:
        axes[0, 0].text(0.5, 0.5, "No system metrics in this archive", ha="center")
    started = datetime.fromtimestamp(t0 / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    fig.suptitle(f"Run {data.key}, started {started}", x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(output, dpi=110, format="png")
    plt.close(fig)
