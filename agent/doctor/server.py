"""The doctor's server checks: configuration, the API key (its source, never its value),
the server (reachable, round trip, an authenticated read, the clock), TLS settings."""

from __future__ import annotations

import email.utils
import time
from urllib.parse import urlsplit, urlunsplit

from agent.api.client import CometClient
from agent.config import Settings
from agent.doctor.check import FAIL, OK, SKIP, WARN, Check
from agent.errors import ApiError, AuthError, TransportError

SKEW_WARN_S = 2.0  # beyond this, sample timestamps would sit visibly off the server's


# -- configuration and key -------------------------------------------------------------------


def config_check(settings: Settings) -> Check:
    """Loading succeeded (else cli.main exits 2 first): say which files it read."""
    files = list(settings.files)
    where = "files read: " + ", ".join(files) if files else "no config file: defaults"
    changed = len(settings.explicit)
    plural = "" if changed == 1 else "s"
    return Check(
        "config",
        OK,
        f"{where}; {changed} setting{plural} from files, environment or flags, all valid",
        data={"files": files, "explicit": sorted(settings.explicit)},
    )


def key_check(settings: Settings) -> Check:
    """Whether an API key is set and where from; never its value, nor its length."""
    if not settings.api_key:
        return Check(
            "api-key",
            SKIP,
            f"no API key: the agent records offline archives in {settings.offline_directory}",
            fix="to send live, set COMET_API_KEY, --api-key-file or the comet-api-key credential",
            data={"source": None},
        )
    note = "; [comet] offline is on, so nothing is sent" if settings.offline else ""
    return Check(
        "api-key",
        OK,
        f"set, from {settings.api_key_source}{note}",
        data={"source": settings.api_key_source},
    )


# -- the server ------------------------------------------------------------------------------


def server_checks(settings: Settings) -> list[Check]:
    """Reachability with round trip, the key with an authenticated read, the clock."""
    url = shown_url(settings.url_override)
    if settings.offline:
        why = "offline requested" if settings.api_key else "no API key (offline mode)"
        return [Check(name, SKIP, f"skipped: {why}") for name in ("server", "auth", "clock")]
    client = CometClient.from_settings(settings)
    with client:
        sent_s = time.time()
        begun = time.monotonic()
        refused: ApiError | None = None
        version: object = None
        try:
            version = client.call("backend-version")
        except TransportError as exc:
            fix = (
                f"check [comet] url_override / COMET_URL_OVERRIDE ({url}), the network "
                "and any proxy in between"
            )
            return [
                Check("server", FAIL, str(exc), fix=fix, data={"url": url}),
                Check("auth", SKIP, "skipped: the server cannot be reached"),
                Check("clock", SKIP, "skipped: the server cannot be reached"),
            ]
        except ApiError as exc:
            refused = exc  # it answered: reachable; what the answer means is auth's business
        rtt_ms = (time.monotonic() - begun) * 1000
        date = client.last_date
        answer = f"backend {version.get('version')}" if isinstance(version, dict) else "answered"
        if refused is not None:
            answer = f"answered HTTP {refused.status}"
        broken = refused is not None and (refused.status or 0) >= 500
        reach = Check(
            "server",
            FAIL if broken else OK,
            f"{url} {answer}, round trip {rtt_ms:.0f} ms",
            data={
                "url": url,
                "rtt_ms": round(rtt_ms, 1),
                "status": getattr(refused, "status", 200),
            },
            fix=(
                f"the server at {url} is failing (HTTP {getattr(refused, 'status', '?')}): "
                "try again later, or check COMET_URL_OVERRIDE"
            )
            if broken
            else None,
        )
        return [reach, auth_check(settings, client, refused), clock_check(date, sent_s, rtt_ms)]


def auth_check(settings: Settings, client: CometClient, refused: ApiError | None) -> Check:
    """A harmless authenticated read (Get Model Registry Count of the workspace)."""
    source = settings.api_key_source
    key_fix = f"replace the key in {source} with a valid one (Comet: Account settings, API keys)"
    if isinstance(refused, AuthError) and refused.status == 401:
        return Check("auth", FAIL, f"Comet rejected the API key from {source}", fix=key_fix)
    if not settings.workspace:
        return Check(
            "auth",
            SKIP,
            "no workspace set, so the key was not checked (the check reads the workspace's "
            "model registry count)",
            fix="set COMET_WORKSPACE or [comet] workspace to check the key too",
        )
    try:
        client.call("registry-model-count", {"workspaceName": settings.workspace})
    except AuthError as exc:
        if exc.status == 403:
            return Check(
                "auth",
                FAIL,
                f"the API key from {source} has no access to workspace {settings.workspace!r}",
                fix="check [comet] workspace / COMET_WORKSPACE, or use a key of a member",
            )
        return Check("auth", FAIL, f"Comet rejected the API key from {source}", fix=key_fix)
    except ApiError as exc:
        return Check(
            "auth",
            WARN,
            f"could not check the key: {exc}",
            fix="try again later; comet-agent start retries on its own",
        )
    return Check("auth", OK, f"the key from {source} reads workspace {settings.workspace!r}")


def clock_check(date: str | None, sent_s: float, rtt_ms: float) -> Check:
    """Compare this clock with the server's ``Date`` header (1 s resolution)."""
    if not date:
        return Check("clock", SKIP, "the server sent no Date header; clock not compared")
    try:
        server_s = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return Check("clock", SKIP, f"the server's Date header {date[:40]!r} is unreadable")
    # Date is cut to the second: +0.5 s is its middle; our side is the request's middle.
    skew_s = server_s + 0.5 - (sent_s + rtt_ms / 2000)
    data = {"skew_s": round(skew_s, 1)}
    if abs(skew_s) <= SKEW_WARN_S:
        return Check("clock", OK, f"within {SKEW_WARN_S:g} s of the server's", data=data)
    side = "behind" if skew_s > 0 else "ahead of"
    return Check(
        "clock",
        WARN,
        f"this clock is {abs(skew_s):.0f} s {side} the server's: sample timestamps would be off",
        fix="sync it: timedatectl set-ntp true (or chrony / ntpd)",
        data=data,
    )


def tls_check(settings: Settings) -> Check:
    """Certificate checks on or off, a custom CA bundle readable, plain http to a remote host."""
    parts = urlsplit(settings.url_override)
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return Check(
            "tls",
            WARN,
            f"{shown_url(settings.url_override)} is plain http: the API key travels unencrypted",
            fix="use an https:// URL in COMET_URL_OVERRIDE",
        )
    if parts.scheme == "http":
        return Check("tls", OK, "plain http to this machine (loopback): nothing leaves it")
    if not settings.verify_tls:
        return Check(
            "tls",
            WARN,
            "certificate checks are off ([http] verify_tls = false): whoever sits in between "
            "can read the API key",
            fix="turn verify_tls back on; for a proxy that re-signs traffic set [http] ca_bundle",
        )
    bundle = settings.ca_bundle
    if bundle is None:
        return Check("tls", OK, "certificates checked against the system's CA store")
    try:
        head = bundle.read_bytes()[: 1 << 20]
    except OSError as exc:
        return Check(
            "tls",
            FAIL,
            f"the CA bundle {bundle} cannot be read ({exc.strerror})",
            fix="fix [http] ca_bundle / COMET_INCLUDE_CUSTOM_CA_BUNDLE or the file's permissions",
        )
    if b"BEGIN CERTIFICATE" not in head:
        return Check(
            "tls",
            FAIL,
            f"the CA bundle {bundle} holds no PEM certificate",
            fix="point [http] ca_bundle at a PEM file (-----BEGIN CERTIFICATE-----)",
        )
    return Check("tls", OK, f"certificates checked against {bundle}")


def shown_url(url: str) -> str:
    """The URL without user name, password or query (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
