"""What ``comet-agent report`` shows, read from an archive: time series, static facts, output tail.

A day sampled every second is about a million metric lines, so metric lines
in the layout every writer uses (compact JSON, sorted keys: the agent's and
the SDK's ``compact_json_dump``) are read with one regular expression; any
other line is parsed as JSON. Only ``sys.*`` metrics are kept, plus the
typed CPU/RAM/load/GPU bodies of comet_agent.jsonl when the ``sys.*``
metric they duplicate is absent (per-core CPU comes from there unless
``sys.cpu.percent.NN`` was sent).

The archive is untrusted (``agent.archive.reader`` bounds its lines): every
payload's shape is checked before use, a point outside 1990..2200 or whose
value is not a finite number is skipped, and what is kept is capped (points,
series, facts, output text), so a hostile archive costs bounded memory.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from agent.archive import Archive, Problem, read_archive

OUTPUT_LINES = 200
FIRST_MS, LAST_MS = 631_152_000_000, 7_258_118_400_000  # 1990-01-01 .. 2200-01-01 UTC
MAX_POINTS = 16_000_000  # 64 cores at one second for three days; 256 MB of arrays at most
MAX_SERIES = 1_000
MAX_OUTPUT_CHARS = 4_096  # per output write kept for the tail
MAX_PROBLEMS = 1_000
FACT_TYPES = frozenset({"system_details", "gpu_static_info", "git_metadata", "file_name",
                        "installed_packages", "os_packages", "cloud_details"})  # fmt: skip
_METRIC = re.compile(
    rb'"local_timestamp":(\d+),(?:"message_id":\d+,)?"metric":\{"epoch":[^,]*,'
    rb'"metricName":"(sys\.[^"\\]*)","metricValue":(-?[0-9][0-9.eE+-]*),'
)
_METRIC_END = b'"type":"metric_msg"}'
_TYPED = (b'"endpoint":"add-cpu-metrics"', b'"endpoint":"add-ram-metrics"',
          b'"endpoint":"add-load-metrics"', b'"endpoint":"add-gpu-metrics"')  # fmt: skip


@dataclass
class Series:
    """One metric over time: parallel arrays of epoch ms and values."""

    times: array[int] = field(default_factory=lambda: array("q"))
    values: array[float] = field(default_factory=lambda: array("d"))

    def add(self, stamp: int, value: float) -> None:
        """Append one point."""
        self.times.append(stamp)
        self.values.append(value)


@dataclass
class OutputLine:
    """One line of the run's output."""

    text: str
    stderr: bool


@dataclass
class RunData:
    """Everything the report draws, from one archive."""

    path: Path
    key: str
    experiment: dict[str, object]
    series: dict[str, Series] = field(default_factory=dict)
    facts: dict[str, dict[str, object]] = field(default_factory=dict)  # type → last payload
    log_other: dict[str, object] = field(default_factory=dict)
    system_info: dict[str, object] = field(default_factory=dict)
    output: list[OutputLine] = field(default_factory=list)
    output_total: int = 0
    lines: int = 0
    problems: list[Problem] = field(default_factory=list)

    points: int = 0

    def get(self, name: str) -> Series | None:
        """Return the series called `name`, if it has points."""
        found = self.series.get(name)
        return found if found is not None and len(found.times) else None

    def problem(self, member: str, number: int | None, why: str) -> None:
        """Note damage, up to MAX_PROBLEMS (the rest are counted in the last one)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(member, number, why))
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append(Problem(member, None, "more damage: not listed"))

    def add(self, name: str, stamp: object, value: object, number: int | None = None) -> None:
        """Add one point if its time and value are sane and the caps allow it."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            return
        if not FIRST_MS <= stamp <= LAST_MS:
            self.problem("messages.json", number, f"{name}: timestamp out of range: skipped")
            return
        try:
            number_value = float(value)
        except OverflowError:
            number_value = math.inf
        if not math.isfinite(number_value):
            self.problem("messages.json", number, f"{name}: value not a finite number: skipped")
            return
        series = self.series.get(name)
        if series is None:
            if len(self.series) >= MAX_SERIES:
                return
            series = self.series[name] = Series()
        if self.points >= MAX_POINTS:
            if self.points == MAX_POINTS:
                self.problem("messages.json", number, f"more than {MAX_POINTS:,} points: cut")
                self.points += 1
            return
        self.points += 1
        series.add(stamp, number_value)


def load(path: Path) -> RunData:
    """Read an archive (zip or partial directory) into a RunData; damage goes to ``problems``."""
    with read_archive(path) as archive:
        data = RunData(path, archive.offline_id, dict(archive.experiment))
        tail: deque[tuple[str, bool]] = deque(maxlen=OUTPUT_LINES * 20)  # frames are writes too
        for number, raw in archive.raw_lines():
            data.lines += 1
            if raw.endswith(_METRIC_END):
                found = _METRIC.search(raw)
                if found is not None:
                    try:
                        value = float(found[3])
                    except ValueError:
                        value = math.nan
                    data.add(found[2].decode(), int(found[1]), value, number)
                    continue
            _slow_line(data, number, raw, tail)
        _typed(archive, data)
        data.output = _tail(tail)
        own, data.problems = data.problems, archive.problems
        for problem in own:
            data.problem(problem.member, problem.line, problem.why)
    return data


def _slow_line(data: RunData, number: int, raw: bytes, tail: deque[tuple[str, bool]]) -> None:
    try:
        obj = json.loads(raw)
        kind, payload = obj["type"], obj["payload"]
    except (ValueError, RecursionError, KeyError, TypeError):
        data.problem("messages.json", number, "not a JSON line: skipped")
        return
    if not isinstance(payload, dict) or not isinstance(kind, str):
        data.problem("messages.json", number, "not a message of the archive format: skipped")
        return
    if kind == "metric_msg":
        metric = _obj(payload.get("metric"))
        name = metric.get("metricName")
        if isinstance(name, str) and name.startswith("sys."):
            data.add(name, payload.get("local_timestamp"), metric.get("metricValue"), number)
    elif kind == "standard_output":
        data.output_total += 1
        text = payload.get("output")
        text = text[:MAX_OUTPUT_CHARS] if isinstance(text, str) else ""
        tail.append((text, payload.get("stderr") is True))
    elif kind == "log_other" and len(data.log_other) < MAX_SERIES:
        data.log_other[str(_short(payload.get("key")))] = _short(payload.get("value"))
    elif kind == "system_info" and len(data.system_info) < MAX_SERIES:
        info = _obj(payload.get("system_info"))
        data.system_info[str(_short(info.get("key")))] = _short(info.get("value"))
    elif kind in FACT_TYPES:
        data.facts[kind] = payload


def _obj(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _short(value: object) -> object:
    """A value kept for the facts table: numbers as they are, anything else as bounded text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + "…"


def _typed(archive: Archive, data: RunData) -> None:
    """Take per-core CPU, and what no sys.* metric carried, from the typed bodies."""
    per_core = any(n.removeprefix("sys.cpu.percent.").isdigit() for n in data.series)
    wanted = [
        (b"cpu" in marker and not per_core)
        or (b"ram" in marker and "sys.ram.used" not in data.series)
        or (b"load" in marker and "sys.load.avg" not in data.series)
        or (b"gpu" in marker and not any(n.startswith("sys.gpu.") for n in data.series))
        for marker in _TYPED
    ]
    if not any(wanted):
        return
    for _, raw in archive.raw_lines("comet_agent.jsonl"):
        for marker, want in zip(_TYPED, wanted, strict=True):
            if want and marker in raw:
                _typed_body(data, raw)
                break


def _typed_body(data: RunData, raw: bytes) -> None:
    try:
        entry = json.loads(raw)
        endpoint, body = entry["endpoint"], entry["body"]
        stamp = body["timestamp"]
    except (ValueError, RecursionError, KeyError, TypeError):
        return

    def add(name: str, value: object) -> None:
        data.add(name, stamp, value)

    if endpoint == "add-cpu-metrics":
        for core, percent in enumerate(_list(body.get("cpuPercentUtilization"))):
            add(f"sys.cpu.percent.{core + 1:02d}", percent)
    elif endpoint == "add-ram-metrics":
        add("sys.ram.used", body.get("usedRam"))
        add("sys.ram.total", body.get("totalRam"))
    elif endpoint == "add-load-metrics":
        add("sys.load.avg", body.get("loadAverage"))
    elif endpoint == "add-gpu-metrics":
        for gpu in _list(body.get("gpus")):
            if not isinstance(gpu, dict) or not isinstance(index := gpu.get("gpuId"), int):
                continue
            add(f"sys.gpu.{index}.gpu_utilization", gpu.get("gpuUtilization"))
            add(f"sys.gpu.{index}.used_memory", gpu.get("usedMemory"))
            add(f"sys.gpu.{index}.total_memory", gpu.get("totalMemory"))


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _tail(items: deque[tuple[str, bool]]) -> list[OutputLine]:
    """Cut the last output writes into the lines a terminal would have left on screen.

    A write is not always one line: stdout and stderr each keep their own
    unfinished line (a stderr warning never joins a stdout progress line), and
    a carriage return starts the line over, so a progress bar's hundred frames
    are the one line its last frame drew.
    """
    lines: list[OutputLine] = []
    pending = {False: "", True: ""}
    for text, stderr in items:
        parts = text.replace("\r\n", "\n").split("\n")
        for i, part in enumerate(parts):
            if i > 0:
                lines.append(OutputLine(pending[stderr], stderr))
                pending[stderr] = ""
            if "\r" in part:
                pending[stderr] = part.rsplit("\r", 1)[1]
            else:
                pending[stderr] += part
    for stderr in (False, True):
        if pending[stderr]:
            lines.append(OutputLine(pending[stderr], stderr))
    return lines[-OUTPUT_LINES:]
