"""Turn a sampler's Sample into the messages the outbox keeps.

Both channels of SPEC.md §3.7/§3.8: one ``log-metric-batch`` message with a
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
        for endpoint, body in sample.typed.items():
            full = dict(body)
            if channels.context is not None:
                full["context"] = channels.context
            out.append(Message(endpoint, experiment_key, full, stamp, Kind.SAMPLE))
    return out


def _name(name: str, prefix: str | None) -> str:
    return f"{prefix}.{name}" if prefix else name
