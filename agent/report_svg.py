"""Line charts as inline SVG (no library, no script): axes, grid, gaps, a legend with figures.

Series are thinned before drawing by ``downsample``: per time bucket the
lowest and the highest point are kept, in time order, so spikes survive and a
day at one-second sampling draws as about a thousand points a line.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Observable's ten categorical colours: distinct, colour-blind friendly enough, print well.
PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951",
           "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e", "#9498a0")  # fmt: skip
WIDTH, HEIGHT = 960, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 22, 28
_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
            43200, 86400, 172800, 604800)  # fmt: skip


@dataclass(frozen=True)
class Line:
    """One series to draw: its label and its points (epoch ms, value in the chart's unit)."""

    label: str
    times: Sequence[int]
    values: Sequence[float]


def downsample(
    times: Sequence[int], values: Sequence[float], points: int
) -> tuple[list[int], list[float]]:
    """Keep each time bucket's minimum and maximum (in time order): at most `points` points."""
    n = len(times)
    if n <= points:
        return list(times), list(values)
    buckets = max(1, points // 2)
    t0, span = times[0], max(1, times[-1] - times[0])
    out_t: list[int] = []
    out_v: list[float] = []
    current = -1
    lo_i = hi_i = 0
    for i in range(n):
        bucket = min(buckets - 1, (times[i] - t0) * buckets // span)
        if bucket != current:
            if current >= 0:
                _emit(times, values, lo_i, hi_i, out_t, out_v)
            current, lo_i, hi_i = bucket, i, i
            continue
        v = values[i]
        if v < values[lo_i]:
            lo_i = i
        elif v > values[hi_i]:
            hi_i = i
    _emit(times, values, lo_i, hi_i, out_t, out_v)
    return out_t, out_v


def _emit(
    times: Sequence[int],
    values: Sequence[float],
    a: int,
    b: int,
    out_t: list[int],
    out_v: list[float],
) -> None:
    for i in sorted({a, b}):
        out_t.append(times[i])
        out_v.append(values[i])


def _gap_ms(times: Sequence[int]) -> float:
    """Return five times the usual interval between points (from a sample of the intervals)."""
    if len(times) < 3:
        return math.inf
    step = max(1, len(times) // 2000)
    deltas = sorted(times[i + step] - times[i] for i in range(0, len(times) - step, step))
    return 5.0 * max(1, deltas[len(deltas) // 2]) / step


def _nice(value: float) -> float:
    """Return a round number (1, 1.2, 1.5, 2 ... 8 times a power of ten) at or above `value`."""
    if value <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(value))
    return next(m * base for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * base >= value)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def elapsed(ms: float) -> str:
    """Format a duration like 0:05, 1:30:00 or 2d 3h."""
    seconds = round(ms / 1000)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def tick_step_s(span_ms: float) -> int:
    """Return a round tick interval giving at most eight ticks over `span_ms`."""
    return next((s for s in _STEPS_S if span_ms / 1000 / s <= 8), _STEPS_S[-1])


def tick_label(seconds: float) -> str:
    """Label an axis tick: 0, 45s, 30m, 1h 30m, 6h, 1d 12h."""
    if round(seconds) == 0:
        return "0"
    days, rest = divmod(round(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return " ".join(parts[:2])


def chart(
    title: str,
    lines: Sequence[Line],
    *,
    unit: str,
    t0: int,
    t1: int,
    y_max: float | None = None,
    points: int = 1000,
) -> str:
    """Return an HTML figure: heading, the SVG chart, and a legend with avg and max per line."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(1, t1 - t0)
    # Many lines (one per core): fewer points each, so the page stays small.
    per_line = max(200, min(points, 8000 // max(1, len(lines))))
    drawn = [(line, *downsample(line.times, line.values, per_line)) for line in lines]
    top = y_max if y_max is not None else _nice(max((max(v) for _, _, v in drawn if v), default=1))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{_fmt(value)}</text>")  # fmt: skip
    step_s = tick_step_s(span)
    tick = 0
    while tick * 1000 <= span:
        x = LEFT + plot_w * tick * 1000 / span
        parts.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>'
        )
        parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                     f"{tick_label(tick)}</text>")  # fmt: skip
        tick += step_s
    unit_text = html.escape(unit)
    parts.append(
        f'<text class="unit" x="{LEFT - 6}" y="{TOP - 9}" text-anchor="end">{unit_text}</text>'
    )
    legend: list[str] = []
    paths: list[str] = []
    for i, (line, times, values) in enumerate(drawn):
        color = PALETTE[i % len(PALETTE)]
        # A pause breaks the line: five usual intervals, or three buckets once thinned.
        bucket_ms = (line.times[-1] - line.times[0]) / max(1, per_line // 2) if line.times else 0
        gap = max(_gap_ms(line.times), 3 * bucket_ms)
        path: list[str] = []
        last_t: int | None = None
        for t, v in zip(times, values, strict=True):
            x = LEFT + plot_w * (t - t0) / span
            y = TOP + plot_h - plot_h * min(max(v, 0.0), top * 1.05) / top
            path.append(
                f"{'L' if last_t is not None and t - last_t <= gap else 'M'}{x:.1f},{y:.1f}"
            )
            last_t = t
        label = html.escape(line.label)
        paths.append(f'<path d="{"".join(path)}" stroke="{color}"><title>{label}</title></path>')
        if line.values:
            avg = sum(line.values) / len(line.values)
            figures = f"avg {_fmt(avg)}, max {_fmt(max(line.values))}"
            legend.append(f'<span><i style="background:{color}"></i>{label} '
                          f'<small>{figures}</small></span>')  # fmt: skip
    parts.extend(reversed(paths))  # the first line (the average, say) is drawn on top
    parts.append("</svg>")
    if len(legend) > 16:  # one per core: the figures would drown the chart
        legend = [*legend[:16], f"<span>… {len(legend) - 16} more</span>"]
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>{''.join(parts)}"
        f'<div class="legend">{"".join(legend)}</div></figure>'
    )
