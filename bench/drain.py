"""Benchmark: write a 100,000-message backlog to a fresh outbox, then drain it into the stand-in.

Run from the repository root: ``python -m bench.drain`` (``--messages N`` to
change the size). Prints the write rates (put_many in bulk, put_many of one
sample's worth, single puts) and the drain rate through RestSink into the
loopback Comet stand-in. The stand-in runs in this process and decodes and
checks every request, so it competes for the GIL: the drain figure is a floor.
Goals: >= 20,000 msg/s written with put_many, >= 1,000 msg/s drained.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random

from agent.api.bodies import cpu_metrics, load_metrics, metric_item, ram_metrics
from agent.api.client import CometClient
from agent.delivery.outbox import Outbox
from agent.delivery.sender import Sender
from agent.delivery.sinks.rest import RestSink
from agent.log import configure
from agent.message import Kind, Message
from tests.fakes.comet_server import CometStandIn

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000_000
NAMES = [
    "sys.cpu.percent.avg",
    "sys.load.avg",
    "sys.ram.total",
    "sys.ram.used",
    "sys.gpu.0.gpu_utilization",
    "sys.gpu.0.used_memory",
    "sys.gpu.0.total_memory",
    "sys.gpu.0.power_usage",
    "sys.disk.read_bps",
    "sys.net.recv_bps",
]


def backlog(count: int, typed_every: int) -> list[Message]:
    """Return `count` messages: metric batches of 10 sys.* items, every n-th a typed body."""
    rand = Random(0)
    out: list[Message] = []
    for n in range(count):
        stamp = T0 + n * 100
        if n % typed_every == typed_every - 1:
            which = (n // typed_every) % 3
            body = (
                cpu_metrics([rand.uniform(0, 100) for _ in range(8)], stamp),
                ram_metrics(64 << 30, rand.randrange(1 << 30, 32 << 30), stamp),
                load_metrics(rand.uniform(0, 8), stamp),
            )[which]
            endpoint = ("add-cpu-metrics", "add-ram-metrics", "add-load-metrics")[which]
            out.append(Message(endpoint, KEY, body, stamp, Kind.SAMPLE))
        else:
            items = [metric_item(name, rand.uniform(0, 100), stamp) for name in NAMES]
            out.append(Message("log-metric-batch", KEY, {"values": items}, stamp, Kind.SAMPLE))
    return out


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} msg/s  ({count:,} in {seconds:.2f} s)"


@dataclass(frozen=True)
class Drain:
    """Write and drain figures for one backlog."""

    messages: int
    typed: int
    single_puts: int
    bulk_s: float  # put_many of 1000 at a time, the whole backlog
    per_sample_s: float  # put_many of 5 (one sample's worth), `single_puts` messages
    single_s: float  # put one by one, `single_puts` messages
    drain_s: float
    sent: int
    requests: int
    drained: bool
    metric_items: int
    violations: list[str]

    @property
    def write_rate(self) -> float:
        """Messages a second written with put_many(1000)."""
        return self.messages / self.bulk_s

    @property
    def drain_rate(self) -> float:
        """Messages a second drained into the stand-in."""
        return self.sent / self.drain_s


def measure(messages: int = 100_000, typed_every: int = 10, single_puts: int = 10_000) -> Drain:
    """Write a backlog three ways, then drain the bulk one into the stand-in."""
    configure(level="warning")  # the per-pass outbox.sent lines are DEBUG; keep figures readable
    backlog_ = backlog(messages, typed_every)
    single_puts = min(single_puts, messages)
    typed = sum(1 for m in backlog_ if m.endpoint != "log-metric-batch")
    with tempfile.TemporaryDirectory() as tmp:
        with Outbox(Path(tmp) / "bulk.db", max_bytes=1 << 40) as box:
            started = time.perf_counter()
            for at in range(0, len(backlog_), 1000):
                box.put_many(backlog_[at : at + 1000])
            bulk_s = time.perf_counter() - started
        with Outbox(Path(tmp) / "sample.db", max_bytes=1 << 40) as box:
            started = time.perf_counter()
            for at in range(0, single_puts, 5):
                box.put_many(backlog_[at : at + 5])
            per_sample_s = time.perf_counter() - started
        with Outbox(Path(tmp) / "single.db", max_bytes=1 << 40) as box:
            started = time.perf_counter()
            for msg in backlog_[:single_puts]:
                box.put(msg)
            single_s = time.perf_counter() - started
        with (
            CometStandIn(api_key=None, known_keys=[KEY]) as server,
            Outbox(Path(tmp) / "bulk.db") as box,
        ):
            # The stand-in writes headers and body in two send()s: with Nagle on, the client's
            # delayed ACK adds ~40 ms to every answer, which a real server does not.
            server._httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
            sink = RestSink(CometClient(api_key="b" * 32, url_override=server.url))
            sender = Sender(box, sink, batch_items=1000)
            started = time.perf_counter()
            drained = sender.flush(600)
            drain_s = time.perf_counter() - started
            sink.close()
            status = sender.status()
            problems = server.violations
            items = len(server.metric_items())
    return Drain(
        len(backlog_),
        typed,
        single_puts,
        bulk_s,
        per_sample_s,
        single_s,
        drain_s,
        status.sent_total,
        status.requests_total,
        drained,
        items,
        problems,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--typed-every", type=int, default=10, help="every n-th message is typed")
    parser.add_argument("--single-puts", type=int, default=10_000)
    args = parser.parse_args(argv)
    r = measure(args.messages, args.typed_every, args.single_puts)
    print(f"backlog: {r.messages:,} messages, {r.typed:,} typed, 10 items per metric message")
    print(f"write put_many(1000): {rate(r.messages, r.bulk_s)}  goal 20,000: "
          f"x{r.write_rate / 20_000:.2f}")  # fmt: skip
    print(f"write put_many(5):    {rate(r.single_puts, r.per_sample_s)}")
    print(f"write put (single):   {rate(r.single_puts, r.single_s)}")
    print(f"drain:                {rate(r.sent, r.drain_s)}  goal 1,000: "
          f"x{r.drain_rate / 1_000:.2f}")  # fmt: skip
    print(f"requests:             {r.requests / r.drain_s:>10,.0f} req/s  "
          f"({r.requests:,} requests, "
          f"{r.sent / max(r.requests, 1):.1f} msg/request)")  # fmt: skip
    print(
        f"drained={r.drained} metric_items={r.metric_items:,} spec_violations={len(r.violations)}"
    )
    return 0 if r.drained and not r.violations else 1


if __name__ == "__main__":
    raise SystemExit(main())
