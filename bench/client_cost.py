"""Client CPU per request to the loopback stand-in: ours against the stacks below it (not a test).

Run: ``python -m bench.client_cost [--requests 300] [--rounds 3]``

One metric batch (a 1 s sample's 15 items) posted over a kept-alive
connection, the same request for every side, in interleaved rounds so a
loaded machine hits all sides alike. The figure is the calling thread's own
CPU (``time.thread_time()``) per request, so the stand-in's threads, which
run in this process, are not counted. Sides: ``CometClient.call`` (ours);
``requests.Session().post`` with its defaults; the same with
``trust_env = False``; urllib3's pool directly; ``http.client``. Goal: ours
within 1.2x of the requests session loop that the issue took as baseline.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3

from agent.api.bodies import metric_batch, metric_item
from agent.api.client import CometClient
from tests.fakes.comet_server import CometStandIn

KEY = "0123456789abcdef0123456789abcdef"
API_KEY = "b" * 32
GOAL_RATIO = 1.2


def _items(n: int = 15) -> list[dict[str, object]]:
    now = int(time.time() * 1000)
    return [metric_item(f"sys.m{i}", i * 1.5, now) for i in range(n)]


@dataclass(frozen=True)
class ClientCost:
    """Median CPU ms per request of each side."""

    requests: int
    ms: dict[str, float]

    @property
    def ratio(self) -> float:
        """Ours over the plain requests session (defaults)."""
        return self.ms["comet-agent CometClient"] / self.ms["requests.Session, defaults"]


def measure(count: int = 300, rounds: int = 3) -> ClientCost:
    """Time `count` requests per side per round; return the medians over `rounds`."""
    with CometStandIn(api_key=None) as server:
        server.register(KEY)  # writes name an experiment the server knows
        server._httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        ours = CometClient(api_key=API_KEY, url_override=server.url)
        body = metric_batch(_items())
        prepared = ours.prepare("log-metric-batch", body, experiment_key=KEY)
        url = prepared.url
        data = json.dumps(prepared.json_body).encode()
        headers = {**prepared.headers}
        plain = requests.Session()
        lean = requests.Session()
        lean.trust_env = False
        parts = urlsplit(url)
        pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=1)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
        target = parts.path + (f"?{parts.query}" if parts.query else "")

        def via_http_client() -> None:
            conn.request("POST", target, body=data, headers=headers)
            conn.getresponse().read()

        sides: dict[str, Callable[[], object]] = {
            "comet-agent CometClient": lambda: ours.call(
                "log-metric-batch", body, experiment_key=KEY
            ),
            "requests.Session, defaults": lambda: plain.post(url, data=data, headers=headers),
            "requests.Session, trust_env=False": lambda: lean.post(url, data=data, headers=headers),
            "urllib3 pool": lambda: pool.urlopen("POST", target, body=data, headers=headers),
            "http.client": via_http_client,
        }
        for fn in sides.values():  # connect, warm up
            for _ in range(10):
                fn()
        per: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(rounds):
            for name, fn in sides.items():
                begun = time.thread_time()
                for _ in range(count):
                    fn()
                per[name].append((time.thread_time() - begun) / count * 1000)
        ours.close()
        plain.close()
        lean.close()
        pool.close()
        conn.close()
        if server.violations:
            raise RuntimeError(f"SPEC violations: {server.violations[:3]}")
    return ClientCost(count, {name: statistics.median(v) for name, v in per.items()})


def main(argv: Sequence[str] | None = None) -> int:
    """Print CPU ms per request for each side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    r = measure(args.requests, args.rounds)
    for name, ms in r.ms.items():
        print(f"{name:36} {ms:.3f} ms CPU per request")
    print(f"ours / requests defaults: {r.ratio:.2f}x (goal <= {GOAL_RATIO}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
