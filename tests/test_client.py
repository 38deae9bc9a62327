"""CometClient: the headers docs/comet-wire.md asks for, every outcome mapped to one exception."""

from __future__ import annotations

import email.utils
import gzip
import json

import pytest

from agent.api.client import CometClient, retry_after_s
from agent.errors import AuthError, ClientError, ServerError, ThrottledError, TransportError
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(name="client")
def _client(server: CometStandIn) -> CometClient:
    with CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=2) as client:
        yield client  # type: ignore[misc]


def test_headers_follow_spec(client: CometClient, server: CometStandIn) -> None:
    """Authorization is the key verbatim; JSON is typed exactly as wire §1.2 says."""
    client.call("log-other", {"key": "k", "value": 1}, experiment_key=KEY)
    rec = server.received("log-other")[0]
    assert rec.headers["Authorization"] == CANARY_KEY
    assert rec.headers["Content-Type"] == "application/json;charset=utf-8"
    assert rec.headers["X-COMET-SDK-SOURCE"] == "Experiment"
    assert "Content-Encoding" not in rec.headers


def test_batch_calls_are_gzipped_with_the_key_header(
    client: CometClient, server: CometStandIn
) -> None:
    """A metric batch of a packet or more is gzipped and carries X-COMET-DEBUG-EXPERIMENT-KEY
    (wire §1.2-1.3); a small one goes plain, where gzip saves nothing and costs CPU."""
    items = [
        {
            "metricName": f"sys.m{n}",
            "metricValue": n,
            "step": None,
            "epoch": None,
            "context": None,
            "timestamp": 1_700_000_000_000,
        }
        for n in range(20)
    ]
    client.call("log-metric-batch", {"values": items}, experiment_key=KEY)
    client.call("log-metric-batch", {"values": items[:1]}, experiment_key=KEY)
    big, small = server.received("log-metric-batch")
    assert big.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(big.raw))["values"] == items
    assert big.headers["X-COMET-DEBUG-EXPERIMENT-KEY"] == KEY
    assert "Content-Encoding" not in small.headers
    assert json.loads(small.raw)["values"] == items[:1]


def test_uncompressed_when_disabled(server: CometStandIn) -> None:
    """COMET_MESSAGE_BATCH_USE_COMPRESSION=false sends the batch as plain JSON."""
    with CometClient(api_key=CANARY_KEY, url_override=server.url, compress=False) as client:
        client.call("log-output", {"outputLines": [], "runContext": None}, experiment_key=KEY)
    assert "Content-Encoding" not in server.received("log-output")[0].headers


def test_nan_is_cleaned_to_a_string(client: CometClient, server: CometStandIn) -> None:
    """NaN never reaches the wire as a bare token (wire §1.3)."""
    client.call("log-metric", {"metricName": "m", "metricValue": float("nan")}, experiment_key=KEY)
    assert server.received("log-metric")[0].body["metricValue"] == "nan"  # type: ignore[index]


@pytest.mark.parametrize(
    ("fault", "exc_type", "retryable"),
    [
        ({"status": 401}, AuthError, False),
        ({"status": 403}, AuthError, False),
        ({"status": 400}, ClientError, False),
        ({"status": 402}, ClientError, False),
        ({"status": 408}, ClientError, True),
        ({"status": 409}, ClientError, True),
        ({"status": 429}, ThrottledError, True),
        ({"status": 500}, ServerError, True),
        ({"status": 501}, ServerError, False),
        ({"status": 503}, ServerError, True),
        ({"status": 302, "headers": {"Location": "http://login.example/"}}, ServerError, True),
        ({"mode": "html"}, ServerError, True),
        ({"mode": "garbage-json"}, ServerError, True),
        ({"mode": "drop"}, TransportError, True),
        ({"mode": "cut"}, TransportError, True),
    ],
)
def test_outcomes_map_to_one_exception(
    client: CometClient,
    server: CometStandIn,
    fault: dict[str, object],
    exc_type: type,
    retryable: bool,
) -> None:
    """Every failure becomes one of our exceptions, with the right retry verdict, never the key."""
    server.fail("log-other", **fault)  # type: ignore[arg-type]
    with pytest.raises(exc_type) as caught:
        client.call("log-other", {"key": "k", "value": 1}, experiment_key=KEY)
    assert caught.value.retryable is retryable
    assert CANARY_KEY not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_redirect_is_not_followed(client: CometClient, server: CometStandIn) -> None:
    """A redirect is reported, not followed (a POST turned GET would look delivered)."""
    server.fail("log-other", status=301, headers={"Location": server.url + "elsewhere"})
    with pytest.raises(ServerError, match="redirected"):
        client.call("log-other", {"key": "k", "value": 1}, experiment_key=KEY)
    assert server.count(ok_only=False) == 1


def test_throttle_carries_the_wait(client: CometClient, server: CometStandIn) -> None:
    """429 with Retry-After-Custom: 1.5 asks for 2.0 s (wire §4.2 adds 0.5 s)."""
    server.fail("log-metric-batch", status=429, headers={"Retry-After-Custom": "1.5"})
    item = {
        "metricName": "m",
        "metricValue": 1,
        "step": None,
        "epoch": None,
        "context": None,
        "timestamp": 1_700_000_000_000,
    }
    with pytest.raises(ThrottledError) as caught:
        client.call("log-metric-batch", {"values": [item]}, experiment_key=KEY)
    assert caught.value.retry_after_s == pytest.approx(2.0)


def test_server_message_is_scrubbed_of_the_key(client: CometClient, server: CometStandIn) -> None:
    """A server that echoes the key in its error message does not make us repeat it."""
    server.fail("log-other", status=400, body={"msg": f"bad key {CANARY_KEY}", "sdk_error_code": 1})
    with pytest.raises(ClientError) as caught:
        client.call("log-other", {"key": "k", "value": 1}, experiment_key=KEY)
    assert CANARY_KEY not in str(caught.value) and "***" in str(caught.value)
    assert caught.value.sdk_error_code == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "2"}, 2.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After-Custom": "1"}, 1.5),
        ({"Retry-After-Custom": "inf"}, None),
        ({"Retry-After-Custom": "1", "Retry-After": "5"}, 5.0),
        ({"Retry-After": email.utils.formatdate(1_000_030, usegmt=True)}, 30.0),
        ({"Retry-After": email.utils.formatdate(999_000, usegmt=True)}, 0.0),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After as seconds or an HTTP date, and Comet's Retry-After-Custom, in one function."""
    assert retry_after_s(headers, now_s=1_000_000.0) == expected
