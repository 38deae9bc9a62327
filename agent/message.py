"""Message: what every collector, the run wrapper and the lifecycle produce, and the outbox keeps.

A message is one request-to-be: the endpoint's name (a key of
``agent.api.endpoints.ENDPOINTS``), the experiment it belongs to, its JSON
body without ``experimentKey`` or ``apiKey`` (the client adds those when it
sends), and the moment it was observed. Bodies of time series carry their own
``timestamp``; nothing downstream re-stamps them.
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

# An experiment key as Comet and the SDK accept it (wire §1.4): the one pattern.
EXPERIMENT_KEY_RE = re.compile(r"^[A-Za-z0-9]{32,50}$")


class Kind(enum.IntEnum):
    """How precious a message is when the outbox is full (lower is kept longer)."""

    FACT = 0  # experiment facts and lifecycle: never dropped
    OUTPUT = 1  # the wrapped command's output: dropped only after every sample
    SAMPLE = 2  # time-series samples: the oldest go first at the size cap


# Endpoints whose messages the sender may merge into one request: endpoint → list field.
MERGEABLE: Mapping[str, str] = {
    "log-metric-batch": "values",
    "log-parameter-batch": "values",
    "log-output": "outputLines",
}


@dataclass(frozen=True)
class Message:
    """One request-to-be, stamped when observed."""

    endpoint: str
    experiment_key: str
    body: Mapping[str, object]
    created_ms: int
    kind: Kind = Kind.SAMPLE
    attachment: bytes | None = field(default=None, repr=False)  # multipart uploads (git patch)

    def encoded_body(self) -> bytes:
        """Return the body as compact JSON bytes (what the outbox stores)."""
        return json.dumps(self.body, separators=(",", ":"), allow_nan=True).encode()

    def merge_key(self) -> tuple[object, ...] | None:
        """Return what must be equal for two messages to share a request, or None if unmergeable."""
        list_field = MERGEABLE.get(self.endpoint)
        if list_field is None:
            return None
        rest = tuple(sorted((k, json.dumps(v)) for k, v in self.body.items() if k != list_field))
        return (self.endpoint, self.experiment_key, rest)


def now_ms() -> int:
    """Return the wall-clock time in integer milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


_STEADY_BASE_NS = time.time_ns() - time.monotonic_ns()


def steady_ms() -> int:
    """Epoch ms that never jump: the wall clock at start-up plus monotonic time since.

    For waits within one process (back-off, retry times, flush deadlines), which a wall-clock
    step back would otherwise stretch by the step (an hour's backlog parked for an hour).
    Retry times are not kept across processes (the outbox clears them when it opens). Never
    for timestamps that travel: a sample is stamped with ``now_ms()``.
    """
    return (_STEADY_BASE_NS + time.monotonic_ns()) // 1_000_000


def merge(messages: list[Message]) -> Mapping[str, object]:
    """Return one body holding the list items of several mergeable messages, in order."""
    first = messages[0]
    list_field = MERGEABLE[first.endpoint]
    items: list[object] = []
    for msg in messages:
        part = msg.body.get(list_field)
        if isinstance(part, list):
            items.extend(part)
    return {**first.body, list_field: items}
