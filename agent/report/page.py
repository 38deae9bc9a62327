"""The report page: one run as self-contained HTML.

The page needs no network: inline CSS, inline SVG charts drawn here
(``agent.report.svg``), no script. It shows CPU (per core when known, else
the average), RAM, load and each GPU's utilisation, memory, power and
temperature over time; the static facts as tables; and the last 200 lines of
output, HTML-escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from agent import __version__, human
from agent.report.data import FIRST_MS, LAST_MS, RunData
from agent.report.panels import GIB, Panel, panels
from agent.report.style import CSS
from agent.report.svg import chart, elapsed, heatmap


def _gpu_note(data: RunData) -> str:
    """Why a run has no GPU charts, in one line."""
    static = data.facts.get("gpu_static_info", {}).get("gpu_static_info")
    if isinstance(static, list) and static:
        return f"{len(static)} GPU(s) were found, but no GPU samples are in this archive."
    return (
        "No GPU metrics in this archive: no NVIDIA GPU was found (or the driver's NVML "
        "library was missing), or GPU sampling was off."
    )


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
