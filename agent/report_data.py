"""What ``comet-agent report`` shows, read from an archive: time series, static facts, output tail.

A day sampled every second is about a million metric lines, so metric lines
in the layout every writer uses (compact JSON, sorted keys: the agent's and
the SDK's ``compact_json_dump``) are read with one regular expression; any
other line is parsed as JSON. Only ``sys.*`` metrics are kept, plus the
typed CPU/RAM/load/GPU bodies of comet_agent.jsonl when the ``sys.*``
metric they duplicate is absent (per-core CPU comes from there unless
``sys.cpu.percent.NN`` was sent).
"""

from __future__ import annotations

import json
import re
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from agent.archive import Archive, Problem, read_archive

OUTPUT_LINES = 200
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

    def get(self, name: str) -> Series | None:
        """Return the series called `name`, if it has points."""
        found = self.series.get(name)
        return found if found is not None and len(found.times) else None


def load(path: Path) -> RunData:
    """Read an archive (zip or partial directory) into a RunData; damage goes to ``problems``."""
    with read_archive(path) as archive:
        data = RunData(path, archive.offline_id, dict(archive.experiment))
        tail: deque[tuple[str, bool]] = deque(maxlen=OUTPUT_LINES * 4)
        for number, raw in archive.raw_lines():
            data.lines += 1
            if raw.endswith(_METRIC_END):
                found = _METRIC.search(raw)
                if found is not None:
                    name = found[2].decode()
                    if name not in data.series:
                        data.series[name] = Series()
                    data.series[name].add(int(found[1]), float(found[3]))
                    continue
            _slow_line(data, number, raw, tail)
        _typed(archive, data)
        data.output = _tail(tail)
        data.problems = archive.problems
    return data


def _slow_line(data: RunData, number: int, raw: bytes, tail: deque[tuple[str, bool]]) -> None:
    try:
        obj = json.loads(raw)
        kind, payload = obj["type"], obj["payload"]
    except (ValueError, KeyError, TypeError):
        data.problems.append(Problem("messages.json", number, "not a JSON line: skipped"))
        return
    if not isinstance(payload, dict):
        return
    if kind == "metric_msg":
        metric = payload.get("metric") or {}
        name, value = metric.get("metricName"), metric.get("metricValue")
        stamp = payload.get("local_timestamp")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(name, str) and name.startswith("sys.") and isinstance(stamp, int) and number:
            data.series.setdefault(name, Series()).add(stamp, float(value))  # type: ignore[arg-type]
    elif kind == "standard_output":
        data.output_total += 1
        tail.append((str(payload.get("output", "")), payload.get("stderr") is True))
    elif kind == "log_other":
        data.log_other[str(payload.get("key"))] = payload.get("value")
    elif kind == "system_info":
        info = payload.get("system_info") or {}
        data.system_info[str(info.get("key"))] = info.get("value")
    else:
        data.facts[str(kind)] = payload


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
        stamp = int(body["timestamp"])
    except (ValueError, KeyError, TypeError):
        return

    def add(name: str, value: object) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            data.series.setdefault(name, Series()).add(stamp, float(value))

    if endpoint == "add-cpu-metrics":
        for core, percent in enumerate(body.get("cpuPercentUtilization") or []):
            add(f"sys.cpu.percent.{core + 1:02d}", percent)
    elif endpoint == "add-ram-metrics":
        add("sys.ram.used", body.get("usedRam"))
        add("sys.ram.total", body.get("totalRam"))
    elif endpoint == "add-load-metrics":
        add("sys.load.avg", body.get("loadAverage"))
    elif endpoint == "add-gpu-metrics":
        for gpu in body.get("gpus") or []:
            index = gpu.get("gpuId")
            add(f"sys.gpu.{index}.gpu_utilization", gpu.get("gpuUtilization"))
            add(f"sys.gpu.{index}.used_memory", gpu.get("usedMemory"))
            add(f"sys.gpu.{index}.total_memory", gpu.get("totalMemory"))


def _tail(items: deque[tuple[str, bool]]) -> list[OutputLine]:
    """Cut the last output items into lines (an item is one write, not always one line)."""
    lines: list[OutputLine] = []
    current, current_err, open_line = "", False, False
    for text, stderr in items:
        parts = text.split("\n")
        for i, part in enumerate(parts):
            if i > 0:
                lines.append(OutputLine(current, current_err))
                current, open_line = "", False
            if part:
                current += part
                current_err = current_err if open_line else stderr
                open_line = True
    if open_line:
        lines.append(OutputLine(current, current_err))
    return lines[-OUTPUT_LINES:]
