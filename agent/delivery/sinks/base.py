"""The Sink protocol: where the sender delivers messages (Comet REST or an offline archive)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Sink(Protocol):
    """Deliver one request-to-be; raise an ApiError when it did not land.

    The sender decides what an error means from its type (``agent.errors``):
    ``retryable`` errors are tried again later, ``AuthError`` pauses sending,
    ``ThrottledError`` parks the endpoint, any other error dead-letters the
    message. ``body`` never holds ``experimentKey`` or ``apiKey``: the sink adds
    what its transport needs. Called from the sender thread only.
    """

    def send(
        self,
        endpoint: str,
        experiment_key: str,
        body: Mapping[str, object],
        attachment: bytes | None,
    ) -> object:
        """Deliver one message (or merged batch) to `endpoint`; return the answer."""
        ...

    def close(self) -> None:
        """Release connections or files."""
        ...
