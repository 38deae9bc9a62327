"""The charts of a report: which panels a run's series make, and how each is drawn."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent import human
from agent.report.data import RunData, Series
from agent.report.svg import Line

GIB = float(1 << 30)
_GPU = re.compile(r"^sys\.gpu\.(\d+)\.")


@dataclass(frozen=True)
class Panel:
    """One chart: title, unit, lines, a fixed top of the scale (percent: 100), how to draw it."""

    title: str
    unit: str
    lines: list[Line]
    y_max: float | None = None
    group: str = "System"  # the page section it belongs to
    heatmap: bool = False  # one row per line (per-core CPU) instead of lines
    note: str = ""

    @property
    def anchor(self) -> str:
        """The figure's id, for the table of contents."""
        return "c-" + re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def _line(label: str, series: Series, scale: float = 1.0, unit: str = "") -> Line:
    values = series.values if scale == 1.0 else [v / scale for v in series.values]
    hover = (lambda v: f"{v:,.2f} {unit}") if unit else None
    return Line(label, series.times, values, hover)


def _busiest(cores: list[Series]) -> Line | None:
    """The busiest core at each sample (cores sampled together share their timestamps)."""
    if len(cores) < 2 or len({len(c.times) for c in cores}) != 1:
        return None
    top = list(map(max, zip(*(c.values for c in cores), strict=True)))
    return Line("busiest core", cores[0].times, top)


def _ram(data: RunData) -> Panel | None:
    used, total = data.get("sys.ram.used"), data.get("sys.ram.total")
    if used is None:
        return None
    if total is None or not max(total.values):
        return Panel("RAM used", "GiB", [_line("used", used, GIB)])
    totals = total.values if len(total.values) == len(used.values) else None
    last = total.values[-1] or max(total.values)  # never 0: the check above
    percent = [
        100.0 * u / (totals[i] if totals and totals[i] else last) for i, u in enumerate(used.values)
    ]
    biggest = max(total.values)
    line = Line(
        "used", used.times, percent, lambda p: f"{p:.1f} % ({p * biggest / 100 / GIB:,.1f} GiB)"
    )
    return Panel(f"RAM used (of {human.size(biggest)})", "%", [line], 100.0)


def panels(data: RunData) -> list[Panel]:
    """Return the charts this run has data for: system, disk and network, process, GPUs."""
    out: list[Panel] = []
    names = sorted(
        (n for n in data.series if n.removeprefix("sys.cpu.percent.").isdigit()),
        key=lambda n: int(n.rsplit(".", 1)[1]),
    )
    cores = [data.series[n] for n in names]
    per_core = [_line(f"core {int(n.rsplit('.', 1)[1])}", data.series[n]) for n in names]
    cpu: list[Line] = []
    if avg := data.get("sys.cpu.percent.avg"):
        cpu.append(_line("average", avg))
    if (busiest := _busiest(cores)) is not None:
        cpu.append(busiest)
    if not cpu and per_core:
        cpu = per_core
    if cpu:
        note = f"{len(cores)} cores: the busiest one at each sample" if busiest else ""
        out.append(Panel("CPU utilisation", "%", cpu, 100.0, note=note))
    if len(per_core) > 1:
        out.append(Panel("CPU per core", "%", per_core, 100.0, heatmap=True))
    if (ram := _ram(data)) is not None:
        out.append(ram)
    if load_avg := data.get("sys.load.avg"):
        out.append(Panel("Load average (1 min)", "load", [_line("load", load_avg)]))
    for title, unit, scale, group, fields, top in (
        ("Disk I/O", "MB/s", 1e6, "Disk and network",
         (("read", "sys.disk.read_bps"), ("write", "sys.disk.write_bps")), None),
        ("Disk used (root)", "%", 1.0, "Disk and network",
         (("used", "sys.disk.root.percent.used"),), 100.0),
        ("Network", "MB/s", 1e6, "Disk and network",
         (("received", "sys.network.receive_bps"), ("sent", "sys.network.send_bps")), None),
        ("Process CPU", "%", 1.0, "Watched process",
         (("CPU (100 % = one core)", "sys.process.cpu_percent"),), None),
        ("Process memory (RSS)", "GiB", GIB, "Watched process",
         (("RSS", "sys.process.rss_bytes"),), None),
    ):  # fmt: skip
        lines = [_line(label, s, scale, unit) for label, name in fields if (s := data.get(name))]
        if lines:
            out.append(Panel(title, unit, lines, top, group=group))
    gpus = sorted({int(m[1]) for n in data.series if (m := _GPU.match(n))})
    for title, field, unit, scale, top in (
        ("GPU utilisation", "gpu_utilization", "%", 1.0, 100.0),
        ("GPU memory used", "used_memory", "GiB", GIB, _gpu_memory_gib(data, gpus)),
        ("GPU power", "power_usage", "W", 1000.0, None),
        ("GPU temperature", "temperature", "°C", 1.0, None),
    ):
        lines = [_line(f"GPU {i}", s, scale, unit) for i in gpus
                 if (s := data.get(f"sys.gpu.{i}.{field}"))]  # fmt: skip
        if lines:
            out.append(Panel(title, unit, lines, top, group="GPUs"))
    return out


def _gpu_memory_gib(data: RunData, gpus: list[int]) -> float | None:
    """The largest GPU's memory, so the chart shows how full the GPUs were."""
    totals = [max(s.values) for i in gpus if (s := data.get(f"sys.gpu.{i}.total_memory"))]
    static = data.facts.get("gpu_static_info", {}).get("gpu_static_info")
    for gpu in static if isinstance(static, list) else []:
        if isinstance(gpu, dict) and isinstance(gpu.get("total_memory"), int):
            totals.append(float(gpu["total_memory"]))
    return max(totals) / GIB if totals else None
