"""Which cloud instance this is: an opt-in probe of the metadata service, under a 1 s budget.

Off by default (``[sampling] cloud_probe``): it is the one collector that
sends packets, to the link-local metadata address. AWS (IMDSv2: a PUT for a
token, then GETs), GCP (``Metadata-Flavor: Google``) and Azure (``Metadata:
true``) are asked at once, each in a daemon thread, and the probe returns at
the budget whatever happens: off the cloud the address usually does not
answer at all. urllib with proxies switched off, since the metadata service
must never be asked through a proxy.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

METADATA_URL = "http://169.254.169.254"
BUDGET_S = 1.0
_AZURE_API = "2021-02-01"
_MAX_ANSWER = 64 * 1024


@dataclass(frozen=True)
class CloudInfo:
    """The provider and the instance it runs."""

    provider: str  # "AWS", "GCP", "Azure"
    instance_type: str
    region: str | None = None
    zone: str | None = None

    def facts(self) -> list[tuple[str, object]]:
        """Additional system-info facts: the provider and the instance type."""
        return [("cloud_provider", self.provider), ("cloud_instance_type", self.instance_type)]


class _Client:
    """urllib without proxies, every request bounded by one deadline."""

    def __init__(self, base_url: str, deadline: float) -> None:
        # Imported here: cloud facts are opt-in, and urllib.request (http.client, email,
        # ssl) is about 2 MB of RSS a long-running agent would otherwise carry for nothing.
        import urllib.request

        self.base = base_url.rstrip("/")
        self.deadline = deadline
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch(
        self, path: str, headers: Mapping[str, str], method: str = "GET"
    ) -> tuple[str, Mapping[str, str]] | None:
        """Return the answer's text and headers, or None on any failure or a non-200."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return None
        import http.client
        import urllib.request

        url = self.base + path  # http:// only, checked in probe()
        req = urllib.request.Request(url, headers=dict(headers), method=method)  # noqa: S310
        try:
            with self.opener.open(req, timeout=left) as resp:
                if resp.status != 200:
                    return None
                text = resp.read(_MAX_ANSWER).decode("utf-8", errors="replace").strip()
                return text, dict(resp.headers.items())
        except (OSError, ValueError, http.client.HTTPException):  # URLError is an OSError
            return None


def _last(path: str | None) -> str | None:
    return path.rsplit("/", 1)[-1] if path else None


def probe_aws(client: _Client) -> CloudInfo | None:
    """Ask AWS's IMDSv2 for the instance type and placement."""
    token = client.fetch(
        "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"}, method="PUT"
    )
    if token is None or not token[0]:
        return None
    auth = {"X-aws-ec2-metadata-token": token[0]}
    kind = client.fetch("/latest/meta-data/instance-type", auth)
    if kind is None or not kind[0]:
        return None
    region = client.fetch("/latest/meta-data/placement/region", auth)
    zone = client.fetch("/latest/meta-data/placement/availability-zone", auth)
    return CloudInfo("AWS", kind[0], region[0] if region else None, zone[0] if zone else None)


def probe_gcp(client: _Client) -> CloudInfo | None:
    """Ask GCP's metadata server for the machine type and zone."""
    flavor = {"Metadata-Flavor": "Google"}
    kind = client.fetch("/computeMetadata/v1/instance/machine-type", flavor)
    # The answer must carry the flavor header back: another cloud's server might answer 200.
    if kind is None or kind[1].get("Metadata-Flavor") != "Google" or not kind[0]:
        return None
    zone_answer = client.fetch("/computeMetadata/v1/instance/zone", flavor)
    zone = _last(zone_answer[0]) if zone_answer else None
    region = zone.rsplit("-", 1)[0] if zone and "-" in zone else None
    return CloudInfo("GCP", str(_last(kind[0])), region, zone)


def probe_azure(client: _Client) -> CloudInfo | None:
    """Ask Azure's instance metadata service for the VM size and location."""
    answer = client.fetch(
        f"/metadata/instance/compute?api-version={_AZURE_API}&format=json", {"Metadata": "true"}
    )
    if answer is None:
        return None
    try:
        data = json.loads(answer[0])
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("vmSize"), str) or not data["vmSize"]:
        return None
    location, zone = data.get("location"), data.get("zone")
    return CloudInfo(
        "Azure",
        data["vmSize"],
        location if isinstance(location, str) and location else None,
        zone if isinstance(zone, str) and zone else None,
    )


PROBES: tuple[Callable[[_Client], CloudInfo | None], ...] = (probe_aws, probe_gcp, probe_azure)


def probe(base_url: str = METADATA_URL, budget_s: float = BUDGET_S) -> CloudInfo | None:
    """Return the cloud instance this host is, or None when no metadata service answers in time."""
    if not base_url.startswith("http://"):
        raise ValueError(f"the metadata URL must be http://, got {base_url!r}")
    deadline = time.monotonic() + budget_s
    results: queue.Queue[CloudInfo | None] = queue.Queue()

    def run(one: Callable[[_Client], CloudInfo | None]) -> None:
        results.put(one(_Client(base_url, deadline)))

    for one in PROBES:
        threading.Thread(target=run, args=(one,), name=f"cloud-{one.__name__}", daemon=True).start()
    for _ in PROBES:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            found = results.get(timeout=left)
        except queue.Empty:
            return None
        if found is not None:
            return found
    return None
