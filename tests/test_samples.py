"""A sample becomes messages on both channels, stamped with its own time."""

from __future__ import annotations

from agent.collect.base import Sample
from agent.collect.readings import CpuUsage
from agent.lifecycle.samples import Channels, to_messages
from agent.message import Kind

KEY = "k" * 32
SAMPLE = Sample(
    timestamp_ms=1_700_000_000_123,
    metrics={"sys.cpu.percent.avg": 12.5, "sys.ram.used": 4_294_967_296},
    readings=(CpuUsage((12, 13)),),
)


def test_both_channels_with_the_sample_time() -> None:
    """One metric batch with every item and one typed message, all at the sample's timestamp."""
    batch, cpu = to_messages(SAMPLE, KEY, Channels())
    assert batch.endpoint == "log-metric-batch"
    assert batch.kind is Kind.SAMPLE
    assert batch.body == {
        "values": [
            {
                "metricName": "sys.cpu.percent.avg",
                "metricValue": 12.5,
                "step": None,
                "epoch": None,
                "context": None,
                "timestamp": 1_700_000_000_123,
            },
            {
                "metricName": "sys.ram.used",
                "metricValue": 4_294_967_296,
                "step": None,
                "epoch": None,
                "context": None,
                "timestamp": 1_700_000_000_123,
            },
        ]
    }
    assert cpu.endpoint == "add-cpu-metrics"
    assert cpu.body == {"cpuPercentUtilization": [12, 13], "timestamp": 1_700_000_000_123}
    assert {batch.created_ms, cpu.created_ms} == {1_700_000_000_123}


def test_context_and_prefix() -> None:
    """A multi-node context goes into items and typed bodies; the node prefix into names."""
    batch, cpu = to_messages(SAMPLE, KEY, Channels(context="node1-rank3", prefix="n1"))
    assert [v["metricName"] for v in batch.body["values"]] == [
        "n1.sys.cpu.percent.avg",  # type: ignore[index, union-attr]
        "n1.sys.ram.used",
    ]
    assert {v["context"] for v in batch.body["values"]} == {"node1-rank3"}  # type: ignore[index, union-attr]
    assert cpu.body["context"] == "node1-rank3"


def test_channels_can_be_switched_off() -> None:
    """[send] sys_metrics / typed_endpoints turn either channel off."""
    assert [m.endpoint for m in to_messages(SAMPLE, KEY, Channels(sys_metrics=False))] == [
        "add-cpu-metrics"
    ]
    assert [m.endpoint for m in to_messages(SAMPLE, KEY, Channels(typed=False))] == [
        "log-metric-batch"
    ]
    assert to_messages(Sample(1), KEY, Channels()) == []
