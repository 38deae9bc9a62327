"""Line charts as inline SVG (no library, no script): axes, grid, gaps, a legend with figures.

Series are thinned before drawing by ``downsample``: per time bucket the
lowest and the highest point are kept, in time order, so spikes survive and a
day at one-second sampling draws as about a thousand points a line.
"""

from __future__ import annotations

import html
import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Observable's ten categorical colours: distinct, colour-blind friendly enough, print well.
PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951",
           "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e", "#9498a0")  # fmt: skip
WIDTH, HEIGHT = 960, 240
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 22, 40
COLUMNS = 240  # time buckets a chart is drawn with: about four pixels each
HOVER_COLUMNS = 60  # invisible strips whose <title> gives every line's value there
_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
            43200, 86400, 172800, 604800)  # fmt: skip


@dataclass(frozen=True)
class Line:
    """One series to draw: its label and its points (epoch ms, value in the chart's unit)."""

    label: str
    times: Sequence[int]
    values: Sequence[float]
    hover: Callable[[float], str] | None = None  # the value as hover text (e.g. GiB for a %)


@dataclass
class Buckets:
    """A series thinned to time buckets: each bucket's time, lowest, mean and highest value."""

    times: list[float] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # bucket number, to see gaps


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


def nice_scale(value: float, ticks: int = 5) -> tuple[float, float]:
    """Return (top, step) for a value axis: 1-2-5 steps, about `ticks` of them, top >= value."""
    if not math.isfinite(value) or value <= 0:
        return 1.0, 0.25
    raw = value / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return step * math.ceil(value / step - 1e-9), step


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
    found = next((s for s in _STEPS_S if span_ms / 1000 / s <= 8), None)
    if found is not None:
        return found
    weeks = math.ceil(span_ms / 1000 / _STEPS_S[-1] / 8)  # a long run: whole weeks, still 8 ticks
    return int(_STEPS_S[-1] * nice_scale(weeks, 1)[0])


def tick_label(seconds: float) -> str:
    """Label an axis tick: 0, 45s, 30m, 1h 30m, 6h, 1d 12h."""
    if round(seconds) == 0:
        return "0"
    days, rest = divmod(round(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return " ".join(parts[:2])


def bucketize(times: Sequence[int], values: Sequence[float], t0: int, span: int) -> Buckets:
    """Thin a series to at most COLUMNS buckets over [t0, t0 + span] (every point when fewer)."""
    out = Buckets()
    n = len(times)
    if n <= COLUMNS:
        for i in range(n):
            v = values[i]
            out.times.append(times[i])
            out.lo.append(v)
            out.mean.append(v)
            out.hi.append(v)
            out.index.append(i)
        return out
    current, lo, hi, total, count, t_sum = -1, 0.0, 0.0, 0.0, 0, 0
    for i in range(n):
        t, v = times[i], values[i]
        bucket = min(COLUMNS - 1, max(0, (t - t0) * COLUMNS // span))
        if bucket != current:
            if count:
                _close(out, current, t_sum / count, lo, total / count, hi)
            current, lo, hi, total, count, t_sum = bucket, v, v, 0.0, 0, 0
        lo, hi = min(lo, v), max(hi, v)
        total += v
        count += 1
        t_sum += t
    if count:
        _close(out, current, t_sum / count, lo, total / count, hi)
    return out


def _close(out: Buckets, index: int, t: float, lo: float, mean: float, hi: float) -> None:
    out.index.append(index)
    out.times.append(t)
    out.lo.append(lo)
    out.mean.append(mean)
    out.hi.append(hi)


def _runs(b: Buckets, gap_ms: float, bucketed: bool) -> list[range]:
    """Split a series' points where the run paused (a gap breaks the line and the band)."""
    runs: list[range] = []
    start = 0
    for i in range(1, len(b.times)):
        broken = (b.index[i] - b.index[i - 1] > 2) if bucketed else False
        if broken or (not bucketed and b.times[i] - b.times[i - 1] > gap_ms):
            runs.append(range(start, i))
            start = i
    if b.times:
        runs.append(range(start, len(b.times)))
    return runs


def _clock(ms: float, span: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if span > 2 * 86_400_000:
        return when.strftime("%b %d %H:%M")
    return when.strftime("%H:%M" if span > 600_000 else "%H:%M:%S")


def chart(
    title: str,
    lines: Sequence[Line],
    *,
    unit: str,
    t0: int,
    t1: int,
    y_max: float | None = None,
    anchor: str = "",
    note: str = "",
) -> str:
    """Return an HTML figure: heading, the SVG chart, and a legend with avg and max per line.

    Each line is its mean per time bucket; where a bucket held more than one
    point a light band spans its lowest and highest, so spikes stay visible
    and a noisy series (GPU power over a day) reads as a line, not a block.
    The first line is drawn on top.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(1, t1 - t0)
    drawn = [(line, bucketize(line.times, line.values, t0, span)) for line in lines]
    highest = max((max(b.hi) for _, b in drawn if b.hi), default=0.0)
    top, step = nice_scale(y_max if y_max is not None else highest)

    def x_of(t: float) -> float:
        return LEFT + plot_w * (t - t0) / span

    def y_of(v: float) -> float:
        return TOP + plot_h - plot_h * min(max(v, 0.0), top * 1.05) / top

    label_text = html.escape(title)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{label_text}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for i in range(round(top / step) + 1):
        value = step * i
        y = y_of(value)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(value)}</text>"
        )
    parts.append(_time_axis(t0, span, TOP + plot_h, grid=True))
    parts.append(
        f'<text class="unit" x="{LEFT - 6}" y="{TOP - 9}" text-anchor="end">'
        f"{html.escape(unit)}</text>"
    )
    legend: list[str] = []
    layers: list[str] = []
    for i, (line, b) in enumerate(drawn):
        color = PALETTE[i % len(PALETTE)]
        bucketed = len(line.times) > COLUMNS
        gap = _gap_ms(line.times)
        band: list[str] = []
        path: list[str] = []
        for run in _runs(b, gap, bucketed):
            pts = [(x_of(b.times[j]), y_of(b.mean[j])) for j in run]
            path.append("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in pts))
            if bucketed and any(b.hi[j] > b.lo[j] for j in run):
                upper = [f"{x_of(b.times[j]):.1f},{y_of(b.hi[j]):.1f}" for j in run]
                lower = [f"{x_of(b.times[j]):.1f},{y_of(b.lo[j]):.1f}" for j in reversed(run)]
                band.append("M" + "L".join(upper + lower) + "Z")
        label = html.escape(line.label)
        layer = ""
        if band:
            layer += f'<path class="band" d="{"".join(band)}" style="fill:{color};stroke:{color}"/>'
        layer += f'<path d="{"".join(path)}" stroke="{color}"><title>{label}</title></path>'
        layers.append(layer)
        if line.values:
            avg = sum(line.values) / len(line.values)
            figures = f"avg {_fmt(avg)}, max {_fmt(max(line.values))}"
            legend.append(f'<span><i style="background:{color}"></i>{label} '
                          f'<small>{figures}</small></span>')  # fmt: skip
    parts.extend(reversed(layers))  # the first line (the average, say) is drawn on top
    parts.append(_hover(drawn, t0, span, unit, x_of))
    parts.append("</svg>")
    if len(legend) > 16:
        legend = [*legend[:16], f"<span>… {len(legend) - 16} more</span>"]
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    return (
        f"<figure{ident}><figcaption>{label_text}</figcaption>{''.join(parts)}"
        f'<div class="legend">{"".join(legend)}</div>{note_html}</figure>'
    )


def _time_axis(t0: int, span: int, base: float, *, grid: bool) -> str:
    """Ticks at round elapsed times (1-2-5 style steps), each with its UTC clock time under it."""
    plot_w = WIDTH - LEFT - RIGHT
    out: list[str] = []
    step_s = tick_step_s(span)
    tick = 0
    while tick * 1000 <= span:
        x = LEFT + plot_w * tick * 1000 / span
        anchor = "end" if x > LEFT + plot_w - 24 else "middle"  # the last label stays inside
        if grid:
            out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{base}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{base + 14}" text-anchor="{anchor}">'
            f"{tick_label(tick)}</text>"
            f'<text class="tick clock" x="{x:.1f}" y="{base + 27}" text-anchor="{anchor}">'
            f"{_clock(t0 + tick * 1000, span)}</text>"
        )
        tick += step_s
    return "".join(out)


def _hover(
    drawn: Sequence[tuple[Line, Buckets]],
    t0: int,
    span: int,
    unit: str,
    x_of: Callable[[float], float],
) -> str:
    """Invisible strips whose <title> a browser shows on hover: time and every line's value."""
    out = ['<g class="hover">']
    width = span / HOVER_COLUMNS
    for c in range(HOVER_COLUMNS):
        a, z = t0 + c * width, t0 + (c + 1) * width
        rows = []
        for line, b in drawn[:12]:
            k = bisect_left(b.times, a)
            if k >= len(b.times) or b.times[k] > z:
                continue
            ks = range(k, max(k + 1, bisect_left(b.times, z, lo=k)))
            value = sum(b.mean[j] for j in ks) / len(ks)
            hi = max(b.hi[j] for j in ks)
            shown = line.hover(value) if line.hover else f"{_fmt(value)} {unit}"
            peak = "" if hi <= value * 1.001 else f" (max {_fmt(hi)})"
            rows.append(f"{line.label}: {shown}{peak}")
        if not rows:
            continue
        when = datetime.fromtimestamp((a + z) / 2000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        text = html.escape(
            f"{when} · +{tick_label((a + z) / 2000 - t0 / 1000)}\n" + "\n".join(rows)
        )
        x = x_of(a)
        out.append(
            f'<rect x="{x:.1f}" y="{TOP}" width="{x_of(z) - x:.1f}" '
            f'height="{HEIGHT - TOP - BOTTOM}"><title>{text}</title></rect>'
        )
    out.append("</g>")
    return "".join(out)


def heatmap(title: str, rows: Sequence[Line], *, t0: int, t1: int, anchor: str = "") -> str:
    """Return per-core utilisation as a heatmap: one thin row per core, darker is busier."""
    span = max(1, t1 - t0)
    plot_w = WIDTH - LEFT - RIGHT
    row_h = max(3, min(14, 256 // max(1, len(rows))))
    height = TOP + row_h * len(rows) + BOTTOM
    cell_w = plot_w / COLUMNS
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{row_h * len(rows)}"/>',
    ]
    label_every = max(1, math.ceil(len(rows) / 8))
    for r, line in enumerate(rows):
        b = bucketize(line.times, line.values, t0, span)
        y = TOP + r * row_h
        avg = sum(line.values) / len(line.values) if line.values else 0.0
        peak = max(line.values) if line.values else 0.0
        cells: list[str] = []
        run_start, run_level = 0, -1
        by_column = {
            (min(COLUMNS - 1, int((t - t0) * COLUMNS // span))): m
            for t, m in zip(b.times, b.mean, strict=True)
        }
        # Fewer samples than columns: a sample holds until the next one, unless the run paused.
        gap = _gap_ms(line.times)  # inf for under three samples: hold to the end
        hold = COLUMNS + 1 if math.isinf(gap) else max(1, int(gap * COLUMNS // span))
        last_col, last_mean = -hold - 1, 0.0
        for col in range(COLUMNS + 1):
            mean = by_column.get(col)
            if mean is not None:
                last_col, last_mean = col, mean
            elif col - last_col < hold:
                mean = last_mean
            level = -1 if mean is None or col == COLUMNS else min(9, max(0, int(mean // 10)))
            if level != run_level:
                if run_level >= 0:
                    x = LEFT + run_start * cell_w
                    cells.append(
                        f'<rect x="{x:.1f}" y="{y}" width="{(col - run_start) * cell_w:.1f}" '
                        f'height="{row_h}" fill="{HEAT[run_level]}"/>'
                    )
                run_start, run_level = col, level
        tip = html.escape(f"{line.label}: avg {_fmt(avg)} %, max {_fmt(peak)} %")
        parts.append(f"<g><title>{tip}</title>{''.join(cells)}</g>")
        if r % label_every == 0 or len(rows) <= 16:
            parts.append(
                f'<text class="tick" x="{LEFT - 6}" y="{y + row_h - 1}" text-anchor="end">'
                f"{html.escape(line.label.removeprefix('core '))}</text>"
            )
    parts.append(_time_axis(t0, span, TOP + row_h * len(rows), grid=False))
    parts.append(
        f'<text class="unit" x="{LEFT - 6}" y="{TOP - 9}" text-anchor="end">core</text></svg>'
    )
    scale = "".join(
        f'<span><i style="background:{c}"></i>{i * 10} to {i * 10 + 10}</span>'
        for i, c in enumerate(HEAT)
        if i % 2 == 0
    )
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    return (
        f"<figure{ident}><figcaption>{html.escape(title)}</figcaption>{''.join(parts)}"
        f'<div class="legend">{scale} <small>% busy, per interval mean; hover a row for its '
        f"figures</small></div></figure>"
    )


# Ten steps of a light-to-dark blue ramp (ColorBrewer Blues, extended): 0-10 % ... 90-100 %.
HEAT = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6",
        "#4292c6", "#2171b5", "#08519c", "#08306b", "#041c42")  # fmt: skip
