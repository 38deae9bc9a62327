"""``comet-agent report --png``: the report's charts as one static image, drawn with matplotlib.

matplotlib is an optional extra (``pip install 'comet-agent[png]'``): it is
imported only here, only when asked for, and through importlib so the agent
type-checks without it.
"""

from __future__ import annotations

import importlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.report.svg import HEAT, PALETTE, bucketize, tick_label, tick_step_s

if TYPE_CHECKING:
    from agent.report.data import RunData
    from agent.report.panels import Panel


def render_png(data: RunData, panels: list[Panel], output: Path) -> None:
    """Draw `panels` one above the other into a PNG at `output`."""
    # Its font-cache notice ("building the font cache", "generated new fontManager") is
    # matplotlib's business, not a line of the agent's JSON log.
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
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
    colors: Any = importlib.import_module("matplotlib.colors")
    heat = colors.ListedColormap(list(HEAT))
    for ax, panel in zip(axes[:, 0], panels, strict=False):
        if panel.heatmap:
            span = max(1, t1 - t0)
            grid = []
            for line in panel.lines:
                b = bucketize(line.times, line.values, t0, span)
                row = [float("nan")] * 240
                for t, m in zip(b.times, b.mean, strict=True):
                    row[min(239, int((t - t0) * 240 // span))] = m
                grid.append(row)
            ax.imshow(grid, aspect="auto", cmap=heat, vmin=0, vmax=100, interpolation="nearest",
                      extent=(0, span / 1000, len(grid) + 0.5, 0.5))  # fmt: skip
            ax.set_title(panel.title, loc="left", fontsize=10, fontweight="bold")
            ax.set_ylabel("core", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.xaxis.set_major_locator(ticker.MultipleLocator(tick_step_s(t1 - t0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda s, _: tick_label(s)))
            continue
        for i, line in enumerate(panel.lines):
            # As the page draws it: the mean per interval, a light band from lowest to highest.
            b = bucketize(line.times, line.values, t0, max(1, t1 - t0))
            xs = [(t - t0) / 1000 for t in b.times]
            color = PALETTE[i % len(PALETTE)]
            order = len(panel.lines) - i  # the first line (the average, say) on top
            if len(line.times) > len(b.times):
                ax.fill_between(xs, b.lo, b.hi, color=color, alpha=0.25, linewidth=0, zorder=order)
            ax.plot(xs, b.mean, color=color, linewidth=1.0, label=line.label, zorder=order)
        ax.set_title(panel.title, loc="left", fontsize=10, fontweight="bold")
        ax.set_ylabel(panel.unit, fontsize=9)
        ax.set_ylim(bottom=0, top=panel.y_max)
        ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
        ax.grid(True, color="#e9ecf2", linewidth=0.8)
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, max(1, t1 - t0) / 1000)
        ax.xaxis.set_major_locator(ticker.MultipleLocator(tick_step_s(t1 - t0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda s, _: tick_label(s)))
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if 1 < len(panel.lines) <= 10:
            # Above the plot, level with the title: never over the 100 % line or the data.
            ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
                      ncol=min(5, len(panel.lines)), borderaxespad=0.2)  # fmt: skip
    if not panels:
        axes[0, 0].text(0.5, 0.5, "No system metrics in this archive", ha="center")
    started = datetime.fromtimestamp(t0 / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    fig.suptitle(f"Run {data.key}, started {started}", x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(output, dpi=110, format="png")
    plt.close(fig)
