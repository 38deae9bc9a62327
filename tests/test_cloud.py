"""The cloud probe against loopback metadata servers that speak each provider's protocol."""

from __future__ import annotations

import json
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.collect import cloud
from agent.collect.cloud import CloudInfo

TOKEN = "AQAEAtoken=="  # noqa: S105 - the fake service's session token


class MetadataServer:
    """A loopback metadata service: `provider` picks which protocol it answers."""

    def __init__(self, provider: str, delay_s: float = 0.0) -> None:
        self.provider = provider
        self.delay_s = delay_s
        self.release = threading.Event()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                self._answer("PUT")

            def do_GET(self) -> None:
                self._answer("GET")

            def _answer(self, method: str) -> None:
                server.seen.append((method, self.path, dict(self.headers.items())))
                if server.delay_s:
                    server.release.wait(server.delay_s)
                status, body, headers = server.route(method, self.path, self.headers)
                data = body.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def route(self, method: str, path: str, h: Message) -> tuple[int, str, dict[str, str]]:
        """Answer as the provider would; header names are case-insensitive, as in HTTP."""
        if self.provider == "aws":
            if method == "PUT" and path == "/latest/api/token":
                ok = h.get("X-aws-ec2-metadata-token-ttl-seconds") == "60"
                return (200, TOKEN, {}) if ok else (400, "", {})
            if h.get("X-aws-ec2-metadata-token") != TOKEN:
                return 401, "", {}
            answers = {
                "/latest/meta-data/instance-type": "p5.48xlarge",
                "/latest/meta-data/placement/region": "us-east-1",
                "/latest/meta-data/placement/availability-zone": "us-east-1a",
            }
            return (200, answers[path], {}) if path in answers else (404, "", {})
        if self.provider == "gcp":
            if h.get("Metadata-Flavor") != "Google":
                return 403, "", {}
            prefix = "/computeMetadata/v1/instance/"
            answers = {
                prefix + "machine-type": "projects/42/machineTypes/a2-highgpu-8g",
                prefix + "zone": "projects/42/zones/us-central1-b",
            }
            if path in answers:
                return 200, answers[path], {"Metadata-Flavor": "Google"}
            return 404, "", {}
        if self.provider == "azure":
            if path.startswith("/metadata/instance/compute?api-version=") and h.get("Metadata"):
                body = {"vmSize": "Standard_ND96asr_v4", "location": "eastus", "zone": "2"}
                return 200, json.dumps(body), {"Content-Type": "application/json"}
            return 400, "", {}
        return 404, "", {}  # a web server that is no metadata service

    def __enter__(self) -> MetadataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_aws_imdsv2() -> None:
    """AWS: a token from PUT, then the instance type and placement with that token."""
    with MetadataServer("aws") as srv:
        found = cloud.probe(srv.url)
    assert found == CloudInfo("AWS", "p5.48xlarge", "us-east-1", "us-east-1a")
    assert found.body() == {
        "provider": "AWS",
        "metadata": {"instanceType": "p5.48xlarge", "region": "us-east-1", "zone": "us-east-1a"},
    }
    assert found.facts() == [("cloud_provider", "AWS"), ("cloud_instance_type", "p5.48xlarge")]
    assert ("PUT", "/latest/api/token") in [(m, p) for m, p, _ in srv.seen]


def test_gcp_machine_type() -> None:
    """GCP: the machine type and zone, the region taken from the zone."""
    with MetadataServer("gcp") as srv:
        found = cloud.probe(srv.url)
    assert found == CloudInfo("GCP", "a2-highgpu-8g", "us-central1", "us-central1-b")


def test_azure_vm_size() -> None:
    """Azure: one JSON answer with the VM size, location and zone."""
    with MetadataServer("azure") as srv:
        found = cloud.probe(srv.url)
    assert found == CloudInfo("Azure", "Standard_ND96asr_v4", "eastus", "2")


def test_no_metadata_service() -> None:
    """A server that answers 404 to everything, or nothing listening: no cloud."""
    with MetadataServer("none") as srv:
        assert cloud.probe(srv.url) is None
        closed = srv.url
    assert cloud.probe(closed) is None


def test_silent_service_is_cut_at_the_budget() -> None:
    """A metadata address that never answers costs at most the budget."""
    with MetadataServer("aws", delay_s=5) as srv:
        start = time.monotonic()
        assert cloud.probe(srv.url, budget_s=0.3) is None
        elapsed = time.monotonic() - start
    assert elapsed < 1.0


def test_proxy_settings_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The metadata service is asked directly even when a proxy is configured."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with MetadataServer("aws") as srv:
        assert cloud.probe(srv.url) == CloudInfo("AWS", "p5.48xlarge", "us-east-1", "us-east-1a")


def test_only_http_urls() -> None:
    """The probe refuses anything but plain http (no file: or custom schemes)."""
    with pytest.raises(ValueError, match="must be http://"):
        cloud.probe("file:///etc/passwd")
