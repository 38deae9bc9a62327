"""Turn a sampler's Sample into the messages the outbox keeps.

Both channels of wire §3.7/§3.8: one ``log-metric-batch`` message with a
``sys.*`` item per metric (what Comet's System Metrics panels show for SDK
runs), and one message per typed body (``add-cpu-metrics`` ...). Every item
carries the sample's own timestamp. The multi-node context goes into each
item and typed body; the node identifier prefixes each metric name, as the
SDK's ``COMET_DISTRIBUTED_NODE_IDENTIFIER`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.api import bodies
from agent.collect.base import Sample
from agent.collect.readings import CpuUsage, GpuUsages, LoadAverage, RamUsage, Reading
from agent.message import Kind, Message


@dataclass(frozen=True)
class Channels:
    """What to send and how to label it."""

    sys_metrics: bool = True
    typed: bool = True
    context: str | None = None
    prefix: str | None = None


def to_messages(sample: Sample, experiment_key: str, channels: Channels) -> list[Message]:
    """Return the messages for one sample (none when both channels are off or it is empty)."""
    out: list[Message] = []
    stamp = sample.timestamp_ms
    if channels.sys_metrics and sample.metrics:
        items = [
            bodies.metric_item(_name(name, channels.prefix), value, stamp, context=channels.context)
            for name, value in sample.metrics.items()
        ]
        out.append(
            Message(
                "log-metric-batch", experiment_key, bodies.metric_batch(items), stamp, Kind.SAMPLE
            )
        )
    if channels.typed:
        for endpoint, body in typed_bodies(sample, channels.context).items():
            out.append(Message(endpoint, experiment_key, body, stamp, Kind.SAMPLE))
    return out


def typed_bodies(sample: Sample, context: str | None = None) -> dict[str, dict[str, object]]:
    """Return the typed endpoints' bodies for a sample's readings, keyed by endpoint name."""
    return dict(typed_body(r, sample.timestamp_ms, context) for r in sample.readings)


def typed_body(
    reading: Reading, timestamp_ms: int, context: str | None = None
) -> tuple[str, dict[str, object]]:
    """Return (endpoint, body) for one reading, stamped with its sample's time."""
    match reading:
        case CpuUsage(percents):
            return "add-cpu-metrics", bodies.cpu_metrics(percents, timestamp_ms, context)
        case RamUsage(total, used):
            return "add-ram-metrics", bodies.ram_metrics(total, used, timestamp_ms, context)
        case LoadAverage(one_minute):
            return "add-load-metrics", bodies.load_metrics(one_minute, timestamp_ms, context)
        case GpuUsages(gpus):
            return "add-gpu-metrics", bodies.gpu_metrics(gpus, timestamp_ms, context)


def _name(name: str, prefix: str | None) -> str:
    return f"{prefix}.{name}" if prefix else name
