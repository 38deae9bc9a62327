"""comet-agent report: one run as a self-contained HTML page (or, with --png, an image).

The source is an offline archive (a zip, or the partial directory of a run
still going or cut short); with no PATH, the newest one in the offline
directory, its ``uploaded/`` folder, or its ``online/`` folder (the local
copies online agents keep with ``local_copy``). A state directory names its
agent's archive in ``status.json``: an offline agent's, or an online agent's
local copy. Without a local copy an online agent has nothing to draw: its
outbox only holds what has not been sent yet, never the whole run.

The page needs no network: inline CSS, inline SVG charts drawn here
(``agent.report.svg``), no script. It shows CPU (per core when known, else
the average), RAM, load and each GPU's utilisation, memory, power and
temperature over time; the static facts as tables; and the last 200 lines of
output, HTML-escaped.
"""

from __future__ import annotations

import argparse
import html
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent import __version__, human
from agent.archive import find_archives
from agent.archive.format import PARTIAL_SUFFIX
from agent.config import Settings
from agent.errors import UsageError
from agent.lifecycle.state import STATUS_NAME, read_status
from agent.report.data import FIRST_MS, LAST_MS, RunData, Series, load
from agent.report.style import CSS
from agent.report.svg import Line, chart, elapsed, heatmap

GIB = float(1 << 30)
_GPU = re.compile(r"^sys\.gpu\.(\d+)\.")
LOCAL_COPY_HINT = "--local-copy (or [comet] local_copy = true)"
PNG_HINT = "--png needs matplotlib: pip install 'comet-agent[png]'"


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


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``comet-agent report [PATH] [-o FILE] [--png]``."""
    source = _source(Path(args.path).expanduser() if args.path else None, settings)
    output = Path(args.output or ("report.png" if args.png else "report.html")).expanduser()
    if args.png:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            raise UsageError(PNG_HINT) from None
    data = load(source)
    if args.png:
        from agent.report.png import render_png

        render_png(data, panels(data), output)
    else:
        output.write_text(render_html(data), encoding="utf-8")
    size_kb = output.stat().st_size / 1024
    print(f"report of {source} written to {output} ({size_kb:,.0f} KB)")
    return 0


def _source(path: Path | None, settings: Settings) -> Path:
    if path is not None and not path.exists():
        raise UsageError(f"no such archive: {path}; give a .zip or a .partial directory")
    if path is not None and (path.is_file() or path.name.endswith(PARTIAL_SUFFIX)):
        return path
    if path is not None and (path / STATUS_NAME).is_file():
        return _from_state(path)
    if path is None:
        folders = [settings.offline_directory, settings.local_copy_directory]
    else:
        folders = [path]
    found = [p for f in folders for sub in (f, f / "uploaded") for p in find_archives(sub)]
    if not found:
        raise UsageError(
            f"{folders[0]} holds no archive; give a .zip or .partial path, or a state directory "
            f"(online agents keep one only with {LOCAL_COPY_HINT})"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def _from_state(state: Path) -> Path:
    """The archive the agent on `state` writes (offline) or keeps as a local copy (online)."""
    snapshot = read_status(state) or {}
    archive = snapshot.get("archive")
    if isinstance(archive, str) and Path(archive).exists():
        return Path(archive)
    if isinstance(archive, str):
        raise UsageError(f"the archive of the agent on {state}, {archive}, is gone")
    raise UsageError(
        f"the agent on {state} keeps no archive: it sends online without a local copy; "
        f"start it with {LOCAL_COPY_HINT} to draw its runs"
    )


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


def _gpu_note(data: RunData) -> str:
    """Why a run has no GPU charts, in one line."""
    static = data.facts.get("gpu_static_info", {}).get("gpu_static_info")
    if isinstance(static, list) and static:
        return f"{len(static)} GPU(s) were found, but no GPU samples are in this archive."
    return (
        "No GPU metrics in this archive: no NVIDIA GPU was found (or the driver's NVML "
        "library was missing), or GPU sampling was off."
    )


def _gpu_memory_gib(data: RunData, gpus: list[int]) -> float | None:
    """The largest GPU's memory, so the chart shows how full the GPUs were."""
    totals = [max(s.values) for i in gpus if (s := data.get(f"sys.gpu.{i}.total_memory"))]
    static = data.facts.get("gpu_static_info", {}).get("gpu_static_info")
    for gpu in static if isinstance(static, list) else []:
        if isinstance(gpu, dict) and isinstance(gpu.get("total_memory"), int):
            totals.append(float(gpu["total_memory"]))
    return max(totals) / GIB if totals else None


def _time_span(data: RunData) -> tuple[int, int]:
    stamps = [t for s in data.series.values() for t in (s.times[:1] + s.times[-1:])]
    for name in ("start_time", "stop_time"):
        stamp = data.experiment.get(name)
        if isinstance(stamp, int) and FIRST_MS <= stamp <= LAST_MS:
            stamps.append(stamp)
    return (min(stamps), max(stamps)) if stamps else (0, 1)


def _utc(ms: object) -> str:
    if not isinstance(ms, int) or not FIRST_MS <= ms <= LAST_MS:
        return "unknown"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(rows: Sequence[tuple[str, object]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_text(v))}</td></tr>"
        for k, v in rows
        if v not in (None, "", [])
    )
    return f"<table>{cells}</table>" if cells else ""


def _text(value: object) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _facts(data: RunData, t0: int, t1: int) -> str:
    e, f = data.experiment, data.facts
    sd, cloud = f.get("system_details", {}), f.get("cloud_details", {})
    git = _dict(f.get("git_metadata", {}).get("git_metadata"))
    parts = ["<h2>Run</h2>", _table([
        ("Experiment key", data.key), ("Workspace", e.get("workspace")),
        ("Project", e.get("project_name")), ("Start", _utc(e.get("start_time"))),
        ("Stop", _utc(e.get("stop_time"))), ("Duration", elapsed(t1 - t0)),
        ("Script", f.get("file_name", {}).get("file_name")),
        ("Archive", str(data.path)),
    ])]  # fmt: skip
    info = [human.info(k, v) for k, v in sorted(data.system_info.items())]
    labels = {label for label, _ in info}
    machine: list[tuple[str, object]] = [
        ("Host", sd.get("hostname")), ("User", sd.get("user")), ("OS", sd.get("os")),
        # The additional info's kernel is the longer string (with the build): shown once.
        ("Kernel", None if "Kernel" in labels else sd.get("os_release")),
        ("Architecture", sd.get("machine")), ("Processor", sd.get("processor")),
        ("IP", sd.get("ip")), ("PID", sd.get("pid")), ("Command", sd.get("command")),
        ("Python", sd.get("python_version_verbose") or sd.get("python_version")),
        ("Python executable", sd.get("python_exe")), ("Cloud", cloud.get("provider")),
        *info,
    ]  # fmt: skip
    parts += ["<h2>Machine</h2>", _table(machine)]
    gpus = f.get("gpu_static_info", {}).get("gpu_static_info")
    if isinstance(gpus, list) and gpus:
        rows = "".join(
            f"<tr><td>{html.escape(str(g.get('gpu_index')))}</td>"
            f"<td>{html.escape(str(g.get('name')))}</td><td>{html.escape(str(g.get('uuid')))}</td>"
            f"<td>{_num(g.get('total_memory'), GIB, 'GiB')}</td>"
            f"<td>{_num(g.get('power_limit'), 1000, 'W')}</td></tr>"
            for g in gpus
            if isinstance(g, dict)
        )
        parts.append("<h2>GPUs</h2><table class='grid'><tr><th>#</th><th>Name</th><th>UUID</th>"
                     f"<th>Memory</th><th>Power limit</th></tr>{rows}</table>")  # fmt: skip
    if git:
        parts += ["<h2>Git</h2>", _table([
            ("Branch", git.get("branch")), ("Commit", git.get("parent")),
            ("Root commit", git.get("root")), ("Origin", git.get("origin")),
            ("Author", git.get("user")),
        ])]  # fmt: skip
    parts.append(_packages(data))
    # log_other repeats some facts for Comet's table (hostname, pid, the agent's version).
    shown = {_text(v) for _, v in machine if v not in (None, "", [])}
    other = [(k, v) for k, v in sorted(data.log_other.items()) if _text(v) not in shown]
    if other:
        parts += ["<h2>Other</h2>", _table(other)]
    return "".join(parts)


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _num(value: object, scale: float, unit: str) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value / scale:,.1f} {unit}"


def _packages(data: RunData) -> str:
    out = []
    for kind, title in (("installed_packages", "Python packages"), ("os_packages", "OS packages")):
        names = data.facts.get(kind, {}).get(kind)
        if isinstance(names, list) and names:
            items = "".join(f"<li>{html.escape(str(n))}</li>" for n in names)
            out.append(f"<details><summary>{title}: {len(names):,}</summary>"
                       f"<ul class='pkgs'>{items}</ul></details>")  # fmt: skip
    return "".join(out)


def _output(data: RunData) -> str:
    if not data.output:
        return "<p class='muted'>No output was recorded.</p>"
    rows = "\n".join(
        f"<span class='err' title='stderr'>{html.escape(line.text)}</span>" if line.stderr
        else html.escape(line.text)
        for line in data.output
    )  # fmt: skip
    key = "<p class='muted'><span class='errkey'>red</span>: stderr</p>"
    has_err = any(line.stderr for line in data.output)
    return f"{key if has_err else ''}<div class='tail'><pre>{rows}</pre></div>"


def _charts(data: RunData, t0: int, t1: int) -> tuple[str, list[tuple[str, str]]]:
    """The chart sections and the table of contents' entries (anchor, title)."""
    groups: dict[str, list[Panel]] = {"System": [], "Disk and network": [],
                                       "Watched process": [], "GPUs": []}  # fmt: skip
    for panel in panels(data):
        groups[panel.group].append(panel)
    html_parts: list[str] = []
    toc: list[tuple[str, str]] = []
    for group, members in groups.items():
        if not members and group != "GPUs":
            continue
        anchor = "g-" + re.sub(r"[^a-z0-9]+", "-", group.lower())
        toc.append((anchor, group))
        body = "".join(
            heatmap(p.title, p.lines, t0=t0, t1=t1, anchor=p.anchor)
            if p.heatmap
            else chart(
                p.title,
                p.lines,
                unit=p.unit,
                t0=t0,
                t1=t1,
                y_max=p.y_max,
                anchor=p.anchor,
                note=p.note,
            )
            for p in members
        )
        if not members:
            body = f"<p class='muted'>{html.escape(_gpu_note(data))}</p>"
        toc += [(p.anchor, f"· {p.title}") for p in members]
        html_parts.append(f"<h2 id='{anchor}'>{html.escape(group)}</h2>{body}")
    if not any(groups.values()):
        html_parts.insert(0, "<p class='muted'>No system metrics in this archive.</p>")
    return "".join(html_parts), toc


def render_html(data: RunData) -> str:
    """Return the whole page."""
    t0, t1 = _time_span(data)
    charts, toc = _charts(data, t0, t1)
    problems = ""
    if data.problems:
        items = "".join(f"<li>{html.escape(str(p))}</li>" for p in data.problems[:50])
        more = len(data.problems) - 50
        items += f"<li>… and {more} more</li>" if more > 0 else ""
        problems = f"<section class='problems'><h2>Damage found</h2><ul>{items}</ul></section>"
        toc.insert(0, ("damage", "Damage found"))
    toc += [("facts", "Facts"), ("output", "Output")]
    links = "".join(f"<a href='#{a}'>{html.escape(t)}</a>" for a, t in toc)
    where = " / ".join(str(x) for x in (data.experiment.get("workspace"),
                       data.experiment.get("project_name")) if x)  # fmt: skip
    title = f"comet-agent report: {data.key}"
    shown = len(data.output)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><main>
<header><h1>Run {html.escape(data.key)}</h1>
<p class="sub">{html.escape(where or "no workspace or project")} · started {_utc(t0)} ·
{elapsed(t1 - t0)} · {data.lines:,} archive lines</p></header>
<nav class="toc">{links}</nav>
{problems.replace("<section class='problems'>", "<section id='damage' class='problems'>")}
<section id="charts"><p class="muted">Time since the start of the run, with the UTC clock
time under it. Each line is the mean per interval; the light band around it spans the
interval's lowest and highest point, so no spike is lost. Hover a chart for its values.</p>
{charts}</section>
<section id="facts" class="facts">{_facts(data, t0, t1)}</section>
<section id="output"><h2>Output <small>(the last {shown:,} lines)</small></h2>
{_output(data)}</section>
<footer>Made by comet-agent {__version__} from {html.escape(str(data.path))}.</footer>
</main></body></html>
"""
