"""RestSink: deliver messages to Comet's REST API through the one CometClient."""

from __future__ import annotations

from collections.abc import Mapping

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
