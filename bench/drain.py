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
from pathlib import Path
from random import Random

from agent.api.bodies import cpu_metrics, load_metrics, metric_item, ram_metrics
from agent.api.client import CometClient
from agent.log import configure
from agent.message import Kind, Message
from agent.outbox import Outbox
from agent.sender import Sender
from agent.sinks.rest import RestSink
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


def main() -> int:
    """Run the benchmark once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--typed-every", type=int, default=10, help="every n-th message is typed")
    parser.add_argument("--single-puts", type=int, default=10_000)
    args = parser.parse_args()
    configure(
        level="warning"
    )  # the per-pass outbox.sent lines are DEBUG; keep the figures readable
    messages = backlog(args.messages, args.typed_every)
    typed = sum(1 for m in messages if m.endpoint != "log-metric-batch")
    print(f"backlog: {len(messages):,} messages, {typed:,} typed, 10 items per metric message")

    with tempfile.TemporaryDirectory() as tmp:
        with Outbox(Path(tmp) / "bulk.db", max_bytes=1 << 40) as box:
            started = time.perf_counter()
            for at in range(0, len(messages), 1000):
                box.put_many(messages[at : at + 1000])
            bulk_s = time.perf_counter() - started
        with Outbox(Path(tmp) / "sample.db", max_bytes=1 << 40) as box:
            started = time.perf_counter()
            for at in range(0, args.single_puts, 5):
                box.put_many(messages[at : at + 5])
            per_sample_s = time.perf_counter() - started
        with Outbox(Path(tmp) / "single.db", max_bytes=1 << 40) as box:
            started = time.perf_counter()
            for msg in messages[: args.single_puts]:
                box.put(msg)
            single_s = time.perf_counter() - started
        print(f"write put_many(1000): {rate(len(messages), bulk_s)}  goal 20,000: "
              f"x{len(messages) / bulk_s / 20_000:.2f}")  # fmt: skip
        print(f"write put_many(5):    {rate(args.single_puts, per_sample_s)}")
        print(f"write put (single):   {rate(args.single_puts, single_s)}")

        with CometStandIn(api_key=None) as server, Outbox(Path(tmp) / "bulk.db") as box:
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
        print(f"drain:                {rate(status.sent_total, drain_s)}  goal 1,000: "
              f"x{status.sent_total / drain_s / 1_000:.2f}")  # fmt: skip
        print(f"requests:             {status.requests_total / drain_s:>10,.0f} req/s  "
              f"({status.requests_total:,} requests, "
              f"{status.sent_total / max(status.requests_total, 1):.1f} msg/request)")  # fmt: skip
        print(f"drained={drained} metric_items={items:,} spec_violations={len(problems)}")
    return 0 if drained and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
