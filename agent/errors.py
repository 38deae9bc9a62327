"""The one exception tree of comet-agent.

Every foreign error (requests, sqlite3, pynvml, OSError from /proc) is
translated into one of these at a single edge, so callers catch our types
only. ``str(exc)`` is always one line a human can act on: it names the
culprit and the fix, and never contains the API key.

```
AgentError                  str(exc) is one line for a human
├── ConfigError             bad file, key, value or flag        → exit 2
├── UsageError              bad command-line use                → exit 2
├── CollectorError          one reading failed                  → skip that sample
│   ├── NoData              expected absence (no cgroup limit)  → DEBUG only
│   ├── Unsupported         the device cannot give this field   → reported once
│   └── GpuLost             a device fell off the bus           → skip that GPU
├── ApiError                .retryable, .retry_after_s, .status
│   ├── AuthError           401/403                             → pause sending
│   ├── ThrottledError      429                                 → wait Retry-After
│   ├── ClientError         other 4xx                           → reject (408/409 retry)
│   ├── ServerError         5xx, undecodable answer             → retry
│   └── TransportError      timeout, refused, TLS               → retry
└── OutboxError             SQLite file unusable                → exit 1
```
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error comet-agent raises on purpose."""


class ConfigError(AgentError):
    """A configuration file, key, value or environment variable is wrong."""


class UsageError(AgentError):
    """The command line asks for something that cannot be done."""


class CollectorError(AgentError):
    """One reading failed; the sample is skipped and the others go on."""


class NoData(CollectorError):
    """An expected absence: the file or field does not exist here."""


class Unsupported(CollectorError):
    """The device or kernel cannot give this field; report it once, never as zero."""


class GpuLost(CollectorError):
    """A GPU fell off the bus or stopped answering."""


class ApiError(AgentError):
    """Comet (or the path to it) did not accept a request."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        sdk_error_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.sdk_error_code = sdk_error_code

    @property
    def retryable(self) -> bool:
        """Whether sending the same request later may succeed."""
        return False


class AuthError(ApiError):
    """Comet rejected the API key (401) or its rights (403)."""


class ThrottledError(ApiError):
    """Comet answered 429; wait ``retry_after_s`` before the next request of this kind."""

    @property
    def retryable(self) -> bool:
        """Throttling always ends."""
        return True


class ClientError(ApiError):
    """Comet rejected the request itself (4xx); resending it unchanged will not help."""

    @property
    def retryable(self) -> bool:
        """408 Request Timeout and 409 Conflict are transient by definition."""
        return self.status in (408, 409)


class ServerError(ApiError):
    """Comet failed (5xx) or answered something that is not the JSON it promises."""

    @property
    def retryable(self) -> bool:
        """501 Not Implemented and 505 HTTP Version won't heal; the rest may."""
        return self.status not in (501, 505)


class TransportError(ApiError):
    """No answer: connection refused or dropped, DNS, TLS, or a timeout."""

    @property
    def retryable(self) -> bool:
        """The network may come back."""
        return True


class OutboxError(AgentError):
    """The on-disk outbox cannot be opened or written."""
