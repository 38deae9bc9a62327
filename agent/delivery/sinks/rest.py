"""RestSink: deliver messages to Comet's REST API through the one CometClient."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.api.client import CometClient


class RestSink:
    """The live sink: one request per send, every outcome an ApiError from the client."""

    def __init__(self, client: CometClient) -> None:
        self._client = client

    def send(
        self,
        endpoint: str,
        experiment_key: str,
        body: Mapping[str, object],
        attachment: bytes | None,
    ) -> object:
        """Send `body` (and `attachment`, for uploads) to `endpoint` of `experiment_key`."""
        return self._client.call(endpoint, body, experiment_key=experiment_key, file=attachment)

    def close(self) -> None:
        """Close the client's pooled connections."""
        self._client.close()


class LazyRestSink:
    """A RestSink made at its first send: `run` spawns the command before requests loads."""

    def __init__(self, make: Callable[[], RestSink]) -> None:
        self._make = make
        self._sink: RestSink | None = None

    def send(
        self,
        endpoint: str,
        experiment_key: str,
        body: Mapping[str, object],
        attachment: bytes | None,
    ) -> object:
        """Send through the RestSink, made now if this is the first send."""
        if self._sink is None:
            self._sink = self._make()
        return self._sink.send(endpoint, experiment_key, body, attachment)

    def close(self) -> None:
        """Close the RestSink, if one was made."""
        if self._sink is not None:
            self._sink.close()
