"""CometClient: one requests.Session that sends one request per call and maps every outcome.

The only module that imports ``requests``. It does not retry (the sender
does, with the outbox behind it), follows no redirects (a POST turned into a
GET by a redirect would look delivered), and never puts the API key anywhere
but the ``Authorization`` header and, for the clientlib protocol calls that
wire §3.1/§3.2 show carrying it, the ``apiKey`` body field.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import requests

from agent import __version__
from agent.api.endpoints import ENDPOINTS, Base, Endpoint, KeyIn, Payload
from agent.errors import (
    AuthError,
    ClientError,
    ServerError,
    ThrottledError,
    TransportError,
    UsageError,
)

if TYPE_CHECKING:
    from agent.config import Settings

JSON_CONTENT_TYPE = "application/json;charset=utf-8"  # wire §1.2: exactly, no space
MASK = "***"
# wire §4.2: the SDK re-sends a throttled type at Retry-After-Custom + 0.5 s.
CUSTOM_RETRY_MARGIN_S = 0.5
_MAX_ERROR_TEXT = 200
# Below about one packet, gzip saves no round trip and costs CPU on both ends; a 1 s metric
# batch (~15 items) is about 1.5 KiB before compression.
GZIP_MIN_BYTES = 1400


@dataclass(frozen=True)
class PreparedCall:
    """A request ready to send; ``masked()`` is what ``--dry-run`` shows."""

    endpoint: Endpoint
    method: str
    url: str
    headers: Mapping[str, str]
    json_body: Mapping[str, object] | None = None
    file: tuple[str, bytes] | None = None
    multipart_fields: Mapping[str, str] = field(default_factory=dict)

    def masked(self) -> dict[str, object]:
        """Return the request as plain data with the API key replaced by ***."""
        headers = {k: (MASK if k == "Authorization" else v) for k, v in self.headers.items()}
        body: object = None
        if self.json_body is not None:
            body = {k: (MASK if k == "apiKey" else v) for k, v in self.json_body.items()}
        out: dict[str, object] = {"method": self.method, "url": self.url, "headers": headers}
        if body is not None:
            out["json"] = body
        if self.file is not None:
            out["file"] = {"filename": self.file[0], "bytes": len(self.file[1])}
            out["parts"] = dict(self.multipart_fields)
        return out


class CometClient:
    """Send requests to one Comet server with one API key."""

    def __init__(
        self,
        *,
        api_key: str,
        url_override: str,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        verify: bool | str = True,
        extra_headers: Mapping[str, str] | None = None,
        compress: bool = True,
    ) -> None:
        self._api_key = api_key
        self._clientlib = url_override if url_override.endswith("/") else url_override + "/"
        parts = urlsplit(self._clientlib)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(
                f"COMET_URL_OVERRIDE {url_override!r} is not an http(s) URL; "
                "set it like https://www.comet.com/clientlib/"
            )
        self._root = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self._timeouts = (connect_timeout_s, timeout_s)
        self._read_s = timeout_s
        self._compress = compress
        self.last_date: str | None = None  # the Date header of the last answer (doctor's clock)
        self._session = requests.Session()
        # The proxy environment (HTTPS_PROXY, NO_PROXY, ...) is read once for the one server
        # we talk to: with trust_env, requests re-reads it on every request (~5% of a call).
        self._session.trust_env = False
        self._session.proxies = requests.utils.get_environ_proxies(self._clientlib)
        if verify is True:
            verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
        self._session.verify = verify
        # The session's own retries stay at 0: only the sender retries (STYLE §16).
        self._session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
        self._session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))
        # requests' own defaults (Accept, Accept-Encoding, Connection) under ours, once.
        self._base_headers = {str(k): str(v) for k, v in self._session.headers.items()}
        self._headers = {
            "Authorization": api_key,  # verbatim, no "Bearer" (wire §1.2)
            "User-Agent": f"comet-agent/{__version__} python-requests/{requests.__version__}",
            "X-COMET-DEBUG-SDK-VERSION": f"comet-agent-{__version__}",
            "X-COMET-DEBUG-PY-VERSION": ".".join(str(n) for n in sys.version_info[:3]),
            **(extra_headers or {}),
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> CometClient:
        """A client for the configured server, key, timeouts, TLS and proxy allow-header."""
        s = settings
        extra = (
            {s.allow_header_name: s.allow_header_value}
            if s.allow_header_name and s.allow_header_value
            else None
        )
        return cls(
            api_key=s.api_key,
            url_override=s.url_override,
            timeout_s=s.http_timeout_s,
            connect_timeout_s=s.connect_timeout_s,
            verify=str(s.ca_bundle) if s.ca_bundle else s.verify_tls,
            extra_headers=extra,
            compress=s.compress,
        )

    def __enter__(self) -> CometClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def url(
        self, endpoint: Endpoint, experiment_key: str | None = None, path: str | None = None
    ) -> str:
        """Return the absolute URL of `endpoint` (its query string not included)."""
        rel = path if path is not None else endpoint.path
        if rel is None:
            raise UsageError(
                f"endpoint {endpoint.name!r} has no known path (wire §7); "
                "pass --path if you know it"
            )
        if endpoint.key_in is KeyIn.PATH:
            if not experiment_key:
                raise UsageError(f"{endpoint.name}: needs an experiment key; set --experiment-key")
            rel = rel.replace("{experimentKey}", experiment_key)
        if endpoint.base is Base.CLIENTLIB:
            return self._clientlib + rel.lstrip("/")
        return self._root + str(endpoint.base.value) + rel.lstrip("/")

    def prepare(
        self,
        endpoint: Endpoint | str,
        body: Mapping[str, object] | None = None,
        *,
        experiment_key: str | None = None,
        file: tuple[str, bytes] | bytes | None = None,
        path: str | None = None,
    ) -> PreparedCall:
        """Build the request for `endpoint` without sending it."""
        ep = ENDPOINTS[endpoint] if isinstance(endpoint, str) else endpoint
        fields: dict[str, object] = dict(body or {})
        query: dict[str, object] = {}
        headers = dict(self._headers)
        if ep.base is Base.REST or ep.base is Base.CLIENTLIB_REST:
            headers["X-COMET-SDK-SOURCE"] = "Experiment"
        elif experiment_key and ep.base is Base.CLIENTLIB:
            headers["X-COMET-DEBUG-EXPERIMENT-KEY"] = experiment_key
        if experiment_key:
            if ep.key_in is KeyIn.BODY:
                fields.setdefault("experimentKey", experiment_key)
            elif ep.key_in is KeyIn.QUERY:
                query["experimentKey"] = experiment_key
        if ep.api_key_in_body:
            fields["apiKey"] = self._api_key
        url = self.url(ep, experiment_key, path)
        json_body: dict[str, object] | None = None
        parts: dict[str, str] = {}
        upload: tuple[str, bytes] | None = None
        if ep.payload is Payload.JSON:
            json_body = fields
            headers["Content-Type"] = JSON_CONTENT_TYPE
        elif ep.payload is Payload.QUERY:
            query.update(fields)
        else:
            if file is None:
                raise UsageError(f"{ep.name}: uploads a file; pass --file PATH")
            upload = file if isinstance(file, tuple) else (ep.file_name, file)
            metadata = fields.pop("metadata", None)
            if metadata is not None:
                parts["metadata"] = json.dumps(metadata)
            query.update(fields)
        if query:
            url += "?" + urlencode({k: _query_value(v) for k, v in query.items()})
        return PreparedCall(ep, ep.method, url, headers, json_body, upload, parts)

    def call(
        self,
        endpoint: Endpoint | str,
        body: Mapping[str, object] | None = None,
        *,
        experiment_key: str | None = None,
        file: tuple[str, bytes] | bytes | None = None,
        path: str | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON answer (None when empty), or raise."""
        prepared = self.prepare(endpoint, body, experiment_key=experiment_key, file=file, path=path)
        return self.send(prepared)

    def send(self, prepared: PreparedCall) -> Any:
        """Send a prepared request; map its outcome to a value or an ApiError."""
        ep = prepared.endpoint
        headers = dict(prepared.headers)
        data: bytes | None = None
        files: dict[str, tuple[str | None, bytes | str]] | None = None
        if prepared.json_body is not None:
            data = _dumps(prepared.json_body)
            if ep.gzip and self._compress and len(data) >= GZIP_MIN_BYTES:
                data = gzip.compress(data, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
        elif prepared.file is not None:
            files = {"file": prepared.file}
            for name, text in prepared.multipart_fields.items():
                files[name] = (None, text)
        try:
            if files is None and prepared.url.isascii() and " " not in prepared.url:
                resp = self._send_lean(prepared.method, prepared.url, headers, data)
            else:
                resp = self._session.request(
                    prepared.method,
                    prepared.url,
                    data=data,
                    files=files,
                    headers=headers,
                    timeout=self._timeouts,
                    allow_redirects=False,
                )
        except requests.Timeout:  # first: a Timeout is also a RequestException
            raise TransportError(
                f"{ep.name}: no answer from {self.host} within {self._read_s:g} s"
            ) from None
        except requests.exceptions.SSLError:
            raise TransportError(
                f"{ep.name}: TLS handshake with {self.host} failed; set "
                "COMET_INCLUDE_CUSTOM_CA_BUNDLE to your CA bundle if a proxy re-signs traffic"
            ) from None
        except requests.RequestException as exc:
            raise TransportError(f"{ep.name}: cannot reach {self.host}: {_reason(exc)}") from None
        self.last_date = resp.headers.get("Date")
        return self._outcome(ep, resp)

    def _send_lean(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None
    ) -> requests.Response:
        """Send a bodyless or bytes-body request through the session, skipping its merge step.

        ``Session.request`` re-merges settings, hooks and headers and re-parses the URL on
        every call (about a third of a small request's CPU here). The URL is ours (built by
        ``url()``, its query already encoded) and the settings are fixed at construction;
        cookies the server sets are still kept and sent back by the session.
        """
        prep = requests.PreparedRequest()
        prep.method = method
        prep.url = url
        prep.hooks = {"response": []}
        prep.headers = requests.structures.CaseInsensitiveDict(self._base_headers)
        prep.headers.update(headers)
        prep.body = data
        if data is not None:
            prep.headers["Content-Length"] = str(len(data))
        elif method in ("POST", "PUT", "PATCH"):
            prep.headers["Content-Length"] = "0"
        jar = requests.cookies.RequestsCookieJar()  # the request's own, as Session.request makes
        if self._session.cookies:
            jar.update(self._session.cookies)
            prep.prepare_cookies(jar)
        else:
            prep._cookies = jar  # type: ignore[attr-defined]  # read when a redirect is examined
        return self._session.send(
            prep,
            timeout=self._timeouts,
            allow_redirects=False,
            proxies=self._session.proxies,
            stream=False,
            verify=self._session.verify,
            cert=None,
        )

    def _outcome(self, ep: Endpoint, resp: requests.Response) -> Any:
        status = resp.status_code
        if 200 <= status < 300:
            return _decode(ep, resp, self._api_key)
        msg, code = _error_fields(resp, self._api_key)
        detail = f"HTTP {status}" + (f": {msg}" if msg else "")
        if status == 401:
            raise AuthError(
                f"{ep.name}: Comet rejected the API key ({detail}); set COMET_API_KEY, "
                "api_key_file or the comet-api-key credential",
                status=status,
                sdk_error_code=code,
            )
        if status == 403:
            raise AuthError(
                f"{ep.name}: the API key has no access here ({detail}); check the workspace, "
                "project and the key's rights",
                status=status,
                sdk_error_code=code,
            )
        retry_after = retry_after_s(resp.headers, time.time())
        if status == 429:
            raise ThrottledError(
                f"{ep.name}: Comet is throttling ({detail})",
                status=status,
                retry_after_s=retry_after,
                sdk_error_code=code,
            )
        if 300 <= status < 400:
            # The Location is the server's text: a redirect can carry the key back in it.
            where = _scrub(resp.headers.get("Location", "elsewhere"), self._api_key)
            raise ServerError(
                f"{ep.name}: {detail} redirected to {where[:100]}; set COMET_URL_OVERRIDE "
                "to the final address",
                status=status,
            )
        if 400 <= status < 500:
            raise ClientError(
                f"{ep.name}: Comet refused the request ({detail})",
                status=status,
                retry_after_s=retry_after,
                sdk_error_code=code,
            )
        raise ServerError(
            f"{ep.name}: Comet failed ({detail})",
            status=status,
            retry_after_s=retry_after,
            sdk_error_code=code,
        )


def retry_after_s(headers: Mapping[str, str], now_s: float) -> float | None:
    """Return the seconds to wait that `headers` ask for, or None.

    Reads Comet's ``Retry-After-Custom`` (float seconds; wire §4.2 adds 0.5 s)
    and the standard ``Retry-After`` (seconds or an HTTP date). When both are
    present the later moment wins, so neither is ever broken.
    """
    waits: list[float] = []
    custom = _header(headers, "Retry-After-Custom")
    if custom is not None:
        seconds = _seconds(custom)
        if seconds is not None:
            waits.append(seconds + CUSTOM_RETRY_MARGIN_S)
    standard = _header(headers, "Retry-After")
    if standard is not None:
        seconds = _seconds(standard)
        if seconds is None:
            try:
                when = email.utils.parsedate_to_datetime(standard)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None and when.tzinfo is not None:
                seconds = max(0.0, when.timestamp() - now_s)
        if seconds is not None:
            waits.append(seconds)
    return max(waits) if waits else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # plain dicts are case-sensitive; requests' are not
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value.strip() if value else None


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"  # wire §2 row 31: the SDK sends True/False
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _dumps(body: Mapping[str, object]) -> bytes:
    try:
        return json.dumps(body, allow_nan=False).encode()
    except ValueError:
        # wire §1.3: the SDK cleans NaN/Infinity to strings before sending; so do we.
        return json.dumps(_clean_floats(body), allow_nan=False).encode()


def _clean_floats(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _clean_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_floats(v) for v in value]
    return value


def _decode(ep: Endpoint, resp: requests.Response, secret: str) -> Any:
    if not resp.content.strip():
        return None
    try:
        return resp.json()
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the limit
        kind = resp.headers.get("Content-Type", "no content type").split(";")[0]
        # A 2xx that is not JSON is a proxy or captive portal, not Comet: the data did not land.
        raise ServerError(
            f"{ep.name}: answered HTTP {resp.status_code} with {_scrub(kind, secret)} that is not "
            "Comet's JSON; check COMET_URL_OVERRIDE and any proxy in between",
            status=resp.status_code,
        ) from None


def _error_fields(resp: requests.Response, secret: str) -> tuple[str, int | None]:
    try:
        data = resp.json()
    except (ValueError, RecursionError):
        data = None
    msg = ""
    code: int | None = None
    if isinstance(data, dict):
        msg = str(data.get("msg") or data.get("message") or "")
        raw_code = data.get("sdk_error_code")
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            code = raw_code
    elif resp.reason:
        msg = resp.reason
    return _scrub(msg, secret), code


def _scrub(text: str, secret: str) -> str:
    one_line = " ".join(text.split())
    if secret:
        one_line = one_line.replace(secret, MASK)
    return one_line[:_MAX_ERROR_TEXT]


def _reason(exc: Exception) -> str:
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found.group(1).strip()
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the server closed the connection without an answer"
    if "IncompleteRead" in text or "ChunkedEncodingError" in type(exc).__name__:
        return "the answer was cut off"
    return type(exc).__name__
