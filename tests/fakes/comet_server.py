"""A loopback Comet stand-in: a real HTTP server checking every request against the wire notes.

Tests start it on 127.0.0.1 with an ephemeral port and point the agent at it
with ``COMET_URL_OVERRIDE=server.url``. Every request is decoded (gzip,
JSON, multipart), checked against ``comet_routes`` (method, path, auth
header, content type, experiment key, fields and their types), recorded,
and answered. A request that breaks docs/comet-wire.md gets HTTP 400 and lands in
``server.violations``, which every test using the fixture asserts empty.

Faults are scripted per route or for all routes: ``server.fail("log-metric-batch",
status=503, times=2)``, ``server.outage(mode="drop")`` ... ``server.recover()``.

By hand: ``python -m tests.fakes.comet_server --port 8080`` and then
``COMET_URL_OVERRIDE=http://127.0.0.1:8080/clientlib/ COMET_API_KEY=anything comet-agent ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import email.parser
import email.policy
import gzip
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.comet_routes import (
    KEY_RE,
    OUTPUT_LINE_SDK,
    ROUTES,
    Route,
    check_fields,
    check_patch_zip,
    list_of,
)

JSON_CT = "application/json;charset=utf-8"
# Paths the real comet_ml SDK calls that the agent never does (answered only with sdk_quirks).
SDK_ONLY_PATHS: dict[str, object] = {
    "/clientlib/asset/3d-limits": {},
    "/clientlib/asset/upload": {"msg": "Saved"},
    "/clientlib/notification/experiment": {"msg": "Saved"},
    "/clientlib/rpc/get-pending-rpc": {"remoteProcedureCalls": []},
    "/api/rest/v2/experiment/tags": {"tags": []},
}
MODES = ("status", "html", "truncated", "cut", "drop", "slow", "garbage-json")


@dataclass
class Recorded:
    """One request as the stand-in saw it."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: object  # decoded JSON, the multipart parts, or None
    raw: bytes
    at: float  # time.time() when it arrived
    status: int = 200
    problems: list[str] = field(default_factory=list)
    experiment_key: str | None = None
    landed: bool = True  # False when the answer was a fault: the data did not land
    fault: str | None = None  # the scripted mode that answered (slow: landed, but late)

    @property
    def accepted(self) -> bool:
        """Whether the stand-in took the data (a 2xx that was not a scripted fault)."""
        return self.landed and 200 <= self.status < 300


@dataclass
class Fault:
    """One scripted misbehaviour."""

    mode: str = "status"  # see MODES
    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict)
    body: object = None
    delay_s: float = 0.0


class CometStandIn:
    """The server, its records and its script. Use as a context manager."""

    def __init__(
        self,
        *,
        api_key: str | None = "x" * 25,
        host: str = "127.0.0.1",
        port: int = 0,
        log: Callable[[str], None] | None = None,
        known_keys: Iterable[str] = (),
    ) -> None:
        self.api_key = api_key  # None: accept any non-empty key
        self.sdk_quirks = (
            False  # accept what docs/comet-wire.md records the real SDK sending (§1.5)
        )
        self.default_workspace: str | None = "stand-in-default"  # account-details
        self.requests: list[Recorded] = []
        self.keepalive: deque[dict[str, object]] = deque()
        self.keepalive_default: dict[str, object] = {
            "isAliveBeatDurationMillis": 10_000,
            "gpuMonitorIntervalMillis": 60_000,
            "cpuMonitorIntervalMillis": 68_000,
        }
        # The server's registry of experiments: a key exists once create-experiment or
        # logger/add/run made it. Tests that pass a key of their own register it first.
        self.experiments: dict[str, dict[str, object]] = {k: {} for k in known_keys}
        self.date_offset_s = 0.0  # added to the Date header of every answer (a skewed clock)
        self._faults: dict[str | None, deque[Fault]] = {}
        self._outage: Fault | None = None
        self._outage_routes: set[str] | None = None
        self._lock = threading.Lock()
        self._log = log
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            name="comet-stand-in",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Value for COMET_URL_OVERRIDE."""
        return f"http://127.0.0.1:{self.port}/clientlib/"

    def start(self) -> CometStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> CometStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- script ----------------------------------------------------------------------------

    def fail(
        self,
        route: str | None = None,
        *,
        times: int = 1,
        mode: str = "status",
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        body: object = None,
        delay_s: float = 0.0,
    ) -> None:
        """Misbehave on the next `times` requests to `route` (None: any route)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if route is not None and route not in {r.name for r in ROUTES}:
            raise ValueError(f"unknown route {route!r}")
        with self._lock:
            queue = self._faults.setdefault(route, deque())
            queue.extend(
                Fault(mode, status, dict(headers or {}), body, delay_s) for _ in range(times)
            )

    def outage(
        self,
        *,
        mode: str = "status",
        status: int = 503,
        routes: set[str] | None = None,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Misbehave on every request (to `routes`, or all) until ``recover()``."""
        with self._lock:
            self._outage = Fault(mode, status, dict(headers or {}), None, delay_s)
            self._outage_routes = routes

    def recover(self) -> None:
        """End an outage and drop any scripted fault not yet used."""
        with self._lock:
            self._outage = None
            self._outage_routes = None
            self._faults.clear()

    def register(self, *keys: str) -> None:
        """Make experiments exist, as if created elsewhere (a key a test passes by hand)."""
        with self._lock:
            for key in keys:
                self.experiments.setdefault(key, {})

    def created(self) -> list[str]:
        """Distinct keys that requests made exist or joined (create-experiment, add-run)."""
        keys = [
            r.experiment_key or ""
            for r in self.received()
            if r.route in ("create-experiment", "add-run") and r.experiment_key
        ]
        return list(dict.fromkeys(keys))

    def answer_keepalive(self, *answers: dict[str, object]) -> None:
        """Queue keep-alive answers; the last one repeats."""
        with self._lock:
            self.keepalive.extend(answers)

    # -- records ---------------------------------------------------------------------------

    @property
    def violations(self) -> list[str]:
        """Every docs/comet-wire.md breach seen so far."""
        with self._lock:
            return [p for r in self.requests for p in r.problems]

    def received(self, route: str | None = None, *, ok_only: bool = True) -> list[Recorded]:
        """Requests to `route` (all when None), by default only those whose data landed."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (route is None or r.route == route) and (not ok_only or r.accepted)
            ]

    def count(self, route: str | None = None, *, ok_only: bool = True) -> int:
        return len(self.received(route, ok_only=ok_only))

    def metric_items(self) -> list[dict[str, object]]:
        """Every item of every accepted metric batch, in arrival order."""
        out: list[dict[str, object]] = []
        for rec in self.received("log-metric-batch"):
            assert isinstance(rec.body, dict)
            out.extend(rec.body["values"])
        return out

    def output_lines(self) -> list[dict[str, object]]:
        """Every accepted Log Output line, in arrival order."""
        out: list[dict[str, object]] = []
        for rec in self.received("log-output"):
            assert isinstance(rec.body, dict)
            out.extend(rec.body["outputLines"])
        return out

    def all_text(self) -> str:
        """Everything received except the Authorization header (for leak checks)."""
        parts = []
        with self._lock:
            for r in self.requests:
                headers = {k: v for k, v in r.headers.items() if k.lower() != "authorization"}
                body = (
                    r.body
                    if not isinstance(r.body, dict)
                    else {k: v for k, v in r.body.items() if k != "apiKey"}
                )
                parts.append(f"{r.method} {r.path} {r.query} {headers} {body}")
        return "\n".join(parts)

    # -- handling --------------------------------------------------------------------------

    def _next_fault(self, route: str) -> Fault | None:
        with self._lock:
            if self._outage is not None and (
                self._outage_routes is None or route in self._outage_routes
            ):
                return self._outage
            for name in (route, None):
                queue = self._faults.get(name)
                if queue:
                    return queue.popleft()
        return None

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)
        if self._log:
            flag = f" PROBLEMS {rec.problems}" if rec.problems else ""
            self._log(f"{rec.status} {rec.method} {rec.path} ({rec.route}){flag}")

    def _refusal(self, route: Route, rec: Recorded) -> dict[str, object] | None:
        """The server's experiment semantics: what it refuses for the key named, else None."""
        key = rec.experiment_key
        if key is None:
            return None
        with self._lock:
            known = key in self.experiments
        body = rec.body if isinstance(rec.body, dict) else {}
        if route.name == "add-run":
            if known and body.get("getOrCreateEnabled") is not True:
                return {"msg": "Experiment already exists", "sdk_error_code": 90999}
            return None
        if known:
            return None
        if route.name == "get-run":
            return {"msg": f"Experiment {key} not found", "sdk_error_code": 90210}
        # Anything sent for an experiment before it exists: the sender's fault, so a breach.
        rec.problems.append(f"{route.name}: experiment {key} does not exist (yet)")
        return {"msg": f"Experiment {key} not found", "sdk_error_code": 90210}

    def _answer(self, route: Route, rec: Recorded) -> dict[str, object]:
        key = rec.experiment_key or ""
        if route.name == "create-experiment":
            assert isinstance(rec.body, dict)
            new_key = uuid.uuid4().hex
            with self._lock:
                self.experiments[new_key] = dict(rec.body)
            rec.experiment_key = new_key
            return {
                "experimentKey": new_key,
                "link": f"http://127.0.0.1:{self.port}/ws/p/{new_key}",
                "projectName": rec.body.get("projectName"),
                "workspaceName": rec.body.get("workspaceName"),
            }
        if route.name == "keep-alive":
            with self._lock:
                answer = (
                    self.keepalive.popleft()
                    if len(self.keepalive) > 1
                    else (self.keepalive[0] if self.keepalive else self.keepalive_default)
                )
            return dict(answer)
        if route.name in ("add-run", "get-run"):
            with self._lock:
                self.experiments.setdefault(key, {})
            return {
                "experimentKey": key,  # the client chose it: echoed back
                "runId": uuid.uuid4().hex,
                "project_id": "p" * 32,
                "focusUrl": f"http://127.0.0.1:{self.port}/ws/p/",
                "lastOffset": 0,
                "name": "stand-in",
                "githubEnabled": False,
                "featureToggles": [],
            }
        if route.name == "status-report":
            return {
                "is_alive_beat_duration_millis": 10_000,
                "gpu_monitor_interval_millis": 60_000,
                "cpu_monitor_interval_millis": 68_000,
                "pending_rpcs": False,
            }
        if route.name == "account-details":
            # The fields comet_ml's API.get_account_details documents; every user has one.
            return {"userName": "stand-in-user", "defaultWorkspaceName": self.default_workspace}
        if route.name == "backend-version":
            return {"version": "4.8.0"}
        if route.name == "experiment-metadata":
            return {
                "experimentKey": key,
                "experimentName": "stand-in",
                "projectName": "p",
                "workspaceName": "ws",
                "archived": False,
                "running": True,
                "throttle": False,
                "throttleMessage": None,
                "throttleReasons": [],
            }
        if route.name == "registry-model-count":
            return {"registryModelCount": 0}
        if route.name == "add-project-share-link":
            return {"shareCode": "the-code"}
        if route.name == "create-project":
            return {"projectId": uuid.uuid4().hex}
        if route.name == "add-symlink":
            return {"link": f"http://127.0.0.1:{self.port}/link/{key}"}
        if route.name == "create-workspace":
            return {
                "code": 200,
                "msg": "saved",
                "workspace_id": str(uuid.uuid4()),
                "workspace_name": "new-workspace-name",
            }
        return {"msg": "Saved"}


def _find_route(method: str, path: str) -> tuple[Route | None, str | None, bool]:
    """Return (route, key-from-path, method-matches)."""
    for route in ROUTES:
        found = route.pattern().match(path)
        if found:
            key = found.groupdict().get("K")
            if route.method == method:
                return route, key, True
            other = route
            break
    else:
        return None, None, False
    return other, None, False


def _handler_for(server: CometStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle and delayed ACKs each answer
        # would stall ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            return

        def date_time_string(self, timestamp: float | None = None) -> str:
            when = time.time() if timestamp is None else timestamp
            return super().date_time_string(when + server.date_offset_s)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if len(raw) < length:  # the client died mid-request (kill -9): nothing arrived
                self.close_connection = True
                return
            headers = {k: v for k, v in self.headers.items()}
            route, path_key, method_ok = _find_route(method, split.path)
            rec = Recorded(
                route.name if route else "?",
                method,
                split.path,
                query,
                headers,
                None,
                raw,
                time.time(),
            )
            if route is None and server.sdk_quirks and split.path in SDK_ONLY_PATHS:
                # What the real SDK also calls (assets, limits, notifications): taken, unchecked.
                rec.route = split.path.rsplit("/", 2)[-2] + "/" + split.path.rsplit("/", 1)[-1]
                self._record_and_send(rec, 200, SDK_ONLY_PATHS[split.path])
                return
            if route is None:
                rec.status = 404
                rec.problems.append(f"unknown path {method} {split.path}")
                self._record_and_send(rec, 404, {"msg": "stand-in: no such endpoint"})
                return
            if not method_ok:
                rec.status = 405
                rec.problems.append(
                    f"{route.name}: method {method}, the wire notes say {route.method}"
                )
                self._record_and_send(rec, 405, {"msg": "stand-in: wrong method"})
                return
            # Authentication first, as a real server would.
            auth = headers.get("Authorization", "")
            if not auth or (server.api_key is not None and auth != server.api_key):
                rec.status = 401
                self._record_and_send(rec, 401, {"msg": "Invalid api key", "sdk_error_code": 90212})
                return
            self._decode(route, rec, raw, query, path_key)
            fault = server._next_fault(route.name)
            if fault is not None and self._misbehave(rec, fault):
                return
            if rec.problems:
                rec.status = 400
                self._record_and_send(rec, 400, {"msg": "stand-in: " + "; ".join(rec.problems)})
                return
            refusal = server._refusal(route, rec)
            if refusal is not None:
                self._record_and_send(rec, 400, refusal)
                return
            self._record_and_send(rec, 200, server._answer(route, rec))

        def _decode(
            self,
            route: Route,
            rec: Recorded,
            raw: bytes,
            query: dict[str, str],
            path_key: str | None,
        ) -> None:
            problems = rec.problems
            fields: dict[str, object] = {}
            if route.payload == "json":
                ctype = rec.headers.get("Content-Type")
                if ctype != JSON_CT:
                    problems.append(
                        f"{route.name}: Content-Type {ctype!r}, the wire notes say {JSON_CT!r}"
                    )
                data = raw
                if rec.headers.get("Content-Encoding") == "gzip":
                    if not route.gzip:
                        problems.append(
                            f"{route.name}: gzip body, the wire notes say never compressed"
                        )
                    try:
                        data = gzip.decompress(raw)
                    except OSError:
                        problems.append(f"{route.name}: Content-Encoding gzip but not gzip")
                        data = b""
                try:
                    body = json.loads(data) if data else None
                except ValueError:
                    problems.append(f"{route.name}: body is not JSON")
                    body = None
                if not isinstance(body, dict):
                    problems.append(f"{route.name}: body must be a JSON object")
                    body = {}
                rec.body = body
                fields = dict(body)
            elif route.payload == "query":
                if raw:
                    problems.append(f"{route.name}: a GET with a body")
                fields = {k: v for k, v in query.items() if k != "experimentKey"}
                rec.body = None
            else:
                rec.body = self._multipart(route, rec, raw)
                fields = {k: v for k, v in query.items() if k != "experimentKey"}
            # Where the key travels (wire §1.4).
            key: object = None
            if route.key == "body":
                key = fields.get("experimentKey", fields.get("previousExperiment"))
            elif route.key == "query":
                key = query.get("experimentKey")
            elif route.key == "path":
                key = path_key
            if route.key != "none":
                if not isinstance(key, str) or not KEY_RE.match(key):
                    problems.append(
                        f"{route.name}: experiment key {key!r} missing or malformed "
                        f"(in the {route.key})"
                    )
                else:
                    rec.experiment_key = key
            if route.api_key_in_body and fields.get("apiKey") != rec.headers.get("Authorization"):
                problems.append(f"{route.name}: apiKey in the body must equal the API key")
            if not route.api_key_in_body and "apiKey" in fields:
                problems.append(
                    f"{route.name}: apiKey in a body that the wire notes do not put it in"
                )
            if server.sdk_quirks and route.name == "log-output":
                route = dataclasses.replace(
                    route, required={"outputLines": list_of(OUTPUT_LINE_SDK)}
                )
            problems.extend(check_fields(route, fields))

        def _multipart(self, route: Route, rec: Recorded, raw: bytes) -> dict[str, object]:
            ctype = rec.headers.get("Content-Type", "")
            if not ctype.startswith("multipart/form-data; boundary="):
                rec.problems.append(
                    f"{route.name}: Content-Type {ctype!r}, the wire notes say multipart"
                )
                return {}
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
            )
            parts: dict[str, object] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                parts[str(name)] = {"filename": part.get_filename(), "bytes": payload}
            upload = parts.get("file")
            if not isinstance(upload, dict):
                rec.problems.append(f"{route.name}: no multipart part named 'file'")
                return parts
            if route.file_name not in (None, "*") and upload["filename"] != route.file_name:
                rec.problems.append(
                    f"{route.name}: file part's filename is "
                    f"{upload['filename']!r}, the wire notes say {route.file_name!r}"
                )
            if route.name == "upload-git-patch":
                rec.problems.extend(check_patch_zip(upload["bytes"]))  # type: ignore[arg-type]
            return parts

        def _misbehave(self, rec: Recorded, fault: Fault) -> bool:
            """Apply `fault`; return True when the request is fully handled."""
            rec.fault = fault.mode
            if fault.delay_s:
                time.sleep(min(fault.delay_s, 30.0))
            if fault.mode == "slow":
                return False
            rec.status = fault.status if fault.mode == "status" else 200
            if fault.mode == "drop":
                rec.status = 0
                server._record(rec)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return True
            if fault.mode == "status":
                body = fault.body if fault.body is not None else {"msg": f"stand-in {fault.status}"}
                rec.status = fault.status
                self._record_and_send(rec, fault.status, body, fault.headers)
                return True
            rec.landed = False  # whatever is answered below, the data did not land
            if fault.mode == "html":
                rec.status = 200
                server._record(rec)
                self._send_raw(200, b"<html><body>Proxy login</body></html>", "text/html")
                return True
            if fault.mode == "garbage-json":
                rec.status = 200
                server._record(rec)
                self._send_raw(200, b'{"msg": "Sa', "application/json")
                return True
            if fault.mode in ("truncated", "cut"):
                rec.status = 0
                server._record(rec)
                body = b'{"msg": "Saved", "padding": "' + b"x" * 64 + b'"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) + 100))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return True
            return False

        def _record_and_send(
            self, rec: Recorded, status: int, body: object, headers: Mapping[str, str] | None = None
        ) -> None:
            rec.status = status
            server._record(rec)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()  # bytes: raw
            self._send_raw(status, data, "application/json", headers)

        def _send_raw(
            self, status: int, data: bytes, ctype: str, headers: Mapping[str, str] | None = None
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler


def iter_routes() -> Iterator[Route]:
    """Every route the stand-in knows."""
    return iter(ROUTES)


def main(argv: list[str] | None = None) -> int:
    """Serve by hand: ``python -m tests.fakes.comet_server --port 8080``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--api-key", default=None, help="accept only this key (default: any non-empty key)"
    )
    args = parser.parse_args(argv)
    server = CometStandIn(
        api_key=args.api_key, port=args.port, log=lambda line: print(line, flush=True)
    )
    print(
        f"Comet stand-in on {server.url}\n"
        f"  export COMET_URL_OVERRIDE={server.url}\n"
        f"  export COMET_API_KEY=<any 25+ characters>  COMET_WORKSPACE=ws  COMET_PROJECT_NAME=p\n"
        "Ctrl-C stops it.",
        flush=True,
    )
    with server:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
