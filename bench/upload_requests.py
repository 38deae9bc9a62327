"""Requests `upload` makes for a 30-minute archive sampled every second (not a test).

Run: ``python -m bench.upload_requests [--seconds 1800]``

Generates the archive ``report`` is benchmarked on (CPU, RAM, load, one GPU,
each second: metric lines and the typed cpu/ram/load/gpu lines), uploads it
to the loopback stand-in with ``comet-agent upload`` in this process, and
counts the requests per endpoint against the messages that went in (one a
second per typed endpoint; eight metric values a second). The metric values
share batch requests; a typed body holds one reading at one timestamp (the
seed defines ``cpuPercentUtilization`` as one list of per-core values, with
one ``timestamp``), so each second stays one request per typed endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.commands.upload import command
from agent.config import load_settings
from tests.fakes.comet_server import CometStandIn
from tests.offline_day import write_day

SESSION = {"backend-version", "add-run", "get-run", "status-report", "offline-metadata"}


@dataclass(frozen=True)
class UploadRequests:
    """Requests by endpoint for one generated archive."""

    seconds: int
    by_route: dict[str, int]
    metric_values: int
    took_s: float

    @property
    def total(self) -> int:
        """Every request but the session's own handshake."""
        return sum(n for route, n in self.by_route.items() if route not in SESSION)


def measure(seconds: int = 1800) -> UploadRequests:
    """Upload a generated archive of `seconds` one-second samples; count its requests."""
    with tempfile.TemporaryDirectory() as tmp, CometStandIn(api_key=None) as server:
        root = Path(tmp)
        (root / "offline").mkdir()
        archive = write_day(root / "offline" / "run.zip", seconds)
        env = {
            "COMET_API_KEY": "b" * 32,
            "COMET_URL_OVERRIDE": server.url,
            "COMET_OFFLINE_DIRECTORY": str(root / "offline"),
            "COMET_AGENT_STATE_DIRECTORY": str(root / "state"),
        }
        settings = load_settings(environ=env, home=root, cwd=root)
        args = argparse.Namespace(
            paths=[str(archive)], dry_run=False, workspace=None, project_name=None
        )
        begun = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = command(args, settings)
        took = time.perf_counter() - begun
        if code != 0:
            raise RuntimeError(f"upload exited {code}")
        by_route = Counter(rec.route for rec in server.received())
        values = sum(
            len(rec.body["values"])  # type: ignore[arg-type,index]
            for rec in server.received("log-metric-batch")
        )
    return UploadRequests(seconds, dict(by_route), values, took)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the requests per endpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=1800)
    r = measure(parser.parse_args(argv).seconds)
    print(f"{r.seconds} s archive uploaded in {r.took_s:.1f} s: {r.total} requests")
    for route, n in sorted(r.by_route.items(), key=lambda kv: -kv[1]):
        print(f"  {route:24} {n}")
    print(f"  metric values sent: {r.metric_values}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
