"""Fuzzing Comet's answers: every status, body and Retry-After maps to one clear ApiError.

The properties:

- ``retry_after_s(headers, now)`` with any header strings (numbers, HTTP
  dates, garbage) returns None or a finite number >= 0, and never raises;
- ``CometClient`` answered by the loopback stand-in with a random status
  (101-599), a random body (JSON of any shape, or bytes that are not JSON)
  and random Retry-After / Retry-After-Custom headers either returns the
  decoded answer (2xx) or raises exactly one ApiError subclass that fits the
  status; its message is one line, never holds the API key, and its
  ``retry_after_s`` is None or finite and >= 0.

Each HTTP example is a real request, so there are few of them.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st

from agent.api.client import CometClient, retry_after_s
from agent.errors import (
    ApiError,
    AuthError,
    ClientError,
    ServerError,
    ThrottledError,
    TransportError,
)
from tests.fakes.comet_server import CometStandIn
from tests.fuzzing import fuzz
from tests.helpers import CANARY_KEY

KEY = "0123456789abcdef0123456789abcdef"

# Header values travel as latin-1 without line breaks (http.client refuses anything else).
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=40,
)
HTTP_DATES = st.datetimes().map(
    lambda d: d.strftime("%a, %d %b ") + f"{d.year:04d}" + d.strftime(" %H:%M:%S GMT")
)
HEADER_VALUES = st.one_of(
    HEADER_TEXT,
    HTTP_DATES,
    st.floats().map(repr),
    st.integers().map(str),
    st.sampled_from(
        ["", " ", "1e999", "-0", "nan", "inf", "1_0", "Wed, 21 Oct 99999 07:28:00 GMT", "0x10"]
    ),
)
HEADER_NAMES = st.sampled_from(
    ["Retry-After", "Retry-After-Custom", "retry-after", "RETRY-AFTER-CUSTOM", "X-Other"]
)


@fuzz(400)
@given(
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
    now=st.floats(min_value=-1e12, max_value=1e12),
)
@example(headers={"Retry-After": "Wed, 21 Oct 99999 07:28:00 GMT"}, now=0.0)
@example(headers={"Retry-After-Custom": "1.7976931348623157e308"}, now=0.0)
def test_retry_after_is_none_or_a_finite_wait(headers: dict[str, str], now: float) -> None:
    """Any Retry-After / Retry-After-Custom strings: None or finite and >= 0, never an error."""
    wait = retry_after_s(headers, now)
    assert wait is None or (isinstance(wait, float) and math.isfinite(wait) and wait >= 0)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
ERROR_SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "msg": JSON | st.just(f"bad key {CANARY_KEY}\nsecond line"),
        "message": JSON,
        "sdk_error_code": JSON | st.integers(),
    },
)
BODIES = st.one_of(
    JSON,
    ERROR_SHAPES,
    st.binary(max_size=60),  # bytes go out raw: not JSON, or not even UTF-8
    st.sampled_from(
        [
            b"<html><body>Bad Gateway</body></html>",
            b"[" * 100_000,  # nesting deeper than the JSON decoder's recursion limit
            CANARY_KEY.encode(),
            b"",
        ]
    ),
)
# 100 Continue is left out: http.client reads past it for the real status line, which the
# stand-in never sends, so the example would only measure the read timeout.
STATUSES = st.one_of(
    st.integers(min_value=101, max_value=599),
    st.sampled_from([200, 204, 301, 400, 401, 403, 404, 408, 409, 429, 500, 501, 503, 505]),
)


@pytest.fixture(name="client_factory")
def _client_factory(server: CometStandIn):  # type: ignore[no-untyped-def]
    def make() -> CometClient:
        return CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=3)

    return make


@fuzz(100, allow=[HealthCheck.function_scoped_fixture])  # one stand-in for every example
@given(
    status=STATUSES,
    body=BODIES,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=2),
)
@example(status=500, body=b"[" * 100_000, headers={})
@example(status=200, body=b"[" * 100_000, headers={})
@example(status=302, body={}, headers={"Location": f"https://x/?k={CANARY_KEY}"})
def test_every_error_answer_is_one_clear_api_error(
    server: CometStandIn,
    client_factory,  # type: ignore[no-untyped-def]
    status: int,
    body: object,
    headers: dict[str, str],
) -> None:
    """Random status, body and headers: the answer, or one ApiError of the right kind."""
    server.fail("log-other", status=status, headers=headers, body=body)
    # A fresh connection per example: after a 1xx, 204 or 304 with a body the stand-in's
    # extra bytes would be read as the next answer on a kept-alive connection.
    try:
        with client_factory() as client:
            answer = client.call("log-other", {"key": "k", "value": 1}, experiment_key=KEY)
    except ApiError as exc:
        check_error(exc, status)
    else:
        assert 200 <= status < 300
        assert answer is None or json.dumps(answer, allow_nan=True)
    finally:
        server.recover()


def check_error(exc: ApiError, status: int) -> None:
    """One line, no key, a sane wait, and the subclass the status calls for."""
    text = str(exc)
    assert text and len(text.splitlines()) == 1 and "\r" not in text, text
    assert CANARY_KEY not in text and CANARY_KEY not in repr(exc.args)
    wait = exc.retry_after_s
    assert wait is None or (math.isfinite(wait) and wait >= 0)
    expected: type[ApiError]
    if isinstance(exc, TransportError):
        return  # the connection itself failed (a 1xx the client could not follow, say)
    if status in (401, 403):
        expected = AuthError
    elif status == 429:
        expected = ThrottledError
    elif 400 <= status < 500:
        expected = ClientError
    else:  # 2xx that is not JSON, 1xx, 3xx (no redirects followed), 5xx
        expected = ServerError
    assert type(exc) is expected, (type(exc), status, text)
    assert exc.status == status


# -- regressions found by the properties above -------------------------------------------------


@pytest.mark.parametrize("status", [200, 503])
def test_json_nested_past_the_recursion_limit_is_a_server_error(
    server: CometStandIn, status: int
) -> None:
    """'[[[[...' 100,000 deep is Comet's garbage (ServerError), not a RecursionError."""
    server.fail("log-other", status=status, body=b"[" * 100_000)
    with (
        CometClient(api_key=CANARY_KEY, url_override=server.url) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.call("log-other", {"key": "k", "value": 1}, experiment_key=KEY)
    assert caught.value.status == status


def test_redirect_location_holding_the_key_is_masked(server: CometStandIn) -> None:
    """A Location header that echoes the API key is shown with the key as ***."""
    server.fail(
        "log-other", status=302, body={}, headers={"Location": f"https://x/?k={CANARY_KEY}"}
    )
    with (
        CometClient(api_key=CANARY_KEY, url_override=server.url) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.call("log-other", {"key": "k", "value": 1}, experiment_key=KEY)
    assert str(caught.value) == (
        "log-other: HTTP 302 redirected to https://x/?k=***; "
        "set COMET_URL_OVERRIDE to the final address"
    )
