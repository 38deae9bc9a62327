"""A loopback cloud metadata service speaking AWS IMDSv2, GCP's or Azure's protocol."""

from __future__ import annotations

import json
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
