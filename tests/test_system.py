"""system.py: which samplers the settings turn on; their samples are accepted by the stand-in."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agent.api import bodies
from agent.api.client import CometClient
from agent.collect.base import Roots, Sample
from agent.collect.cgroup import describe
from agent.collect.cpu import CpuSampler
from agent.collect.memory import MemorySampler
from agent.collect.system import system_samplers
from agent.config import Settings, replace
from agent.lifecycle.samples import typed_bodies
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "0123456789abcdef0123456789abcdef"


def names(settings: Settings, pid: int | None = None) -> list[str]:
    samplers = system_samplers(settings, pid=pid)
    try:
        return [s.name for s in samplers]
    finally:
        for s in samplers:
            s.close()


def test_defaults_and_switches() -> None:
    """Every switch on by default; process only with a pid; each [sampling] switch works."""
    on = Settings()
    assert names(on) == ["cpu", "memory", "load", "disk", "network"]
    assert names(on, pid=os.getpid()) == ["cpu", "memory", "load", "disk", "network", "process"]
    assert names(replace(on, sample_cpu=False), pid=os.getpid()) == ["disk", "network", "process"]
    assert names(replace(on, sample_disk=False, sample_network=False)) == ["cpu", "memory", "load"]
    assert names(replace(on, sample_process=False), pid=os.getpid())[-1] == "network"


def test_fixture_roots_reach_cpu_and_memory() -> None:
    """roots= reaches the cgroup-aware samplers (a 2.5-CPU, 4 GiB container here)."""
    samplers = system_samplers(
        replace(Settings(), sample_disk=False, sample_network=False),
        roots=Roots.under(FIXTURES / "cgroup2-limited"),
    )
    time.sleep(0.55)  # a CPU figure covers at least half a second
    metrics = {k: v for s in samplers for k, v in s.collect().metrics.items()}
    assert metrics["sys.cpu.pressure.some_avg10"] == 12.5  # the fixture's cpu.pressure
    assert metrics["sys.ram.total"] == 4_294_967_296
    assert metrics["sys.load.avg"] == 3.42


def send(client: CometClient, samples: list[Sample]) -> int:
    """Send samples the way the daemon will: typed bodies one by one, all metrics in one batch."""
    items = []
    for sample in samples:
        for endpoint, body in typed_bodies(sample).items():
            client.call(endpoint, body, experiment_key=KEY)
        items += [bodies.metric_item(k, v, sample.timestamp_ms) for k, v in sample.metrics.items()]
    client.call("log-metric-batch", bodies.metric_batch(items), experiment_key=KEY)
    return len(items)


def test_real_and_fixture_samples_pass_the_stand_in(server: CometStandIn) -> None:
    """Samples from this machine and from the cgroup fixtures break no rule of the wire notes."""
    samplers = system_samplers(Settings(), pid=os.getpid())
    time.sleep(0.55)  # rates need time since the priming read (CPU: at least half a second)
    samples = [s.collect() for s in samplers]
    for tree in ("cgroup2-limited", "cgroup1", "host-plain"):
        roots = Roots.under(FIXTURES / tree)
        samples.append(CpuSampler(roots=roots, cpu_percent=lambda: [25.0, 75.0] * 4).collect())
        samples.append(MemorySampler(roots=roots).collect())
    with CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=5) as client:
        count = send(client, samples)
        facts = [{"key": k, "value": v} for k, v in describe(Roots.under(FIXTURES / "cgroup1"))]
        client.call(
            "set-system-details", bodies.system_details(additional=facts), experiment_key=KEY
        )
    assert server.violations == []
    assert server.count("add-cpu-metrics") == 4
    assert server.count("add-ram-metrics") == 4
    assert server.count("add-load-metrics") == 1
    sent = server.metric_items()
    assert len(sent) == count
    assert {"sys.process.count", "sys.disk.root.used", "sys.ram.oom_kills"} <= {
        str(item["metricName"]) for item in sent
    }
