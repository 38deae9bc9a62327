"""Uploader: send offline archives to Comet, one after the other, resumably.

Per archive, as the SDK's uploader does (wire §6.4): the backend version,
the handshake (``add-run`` with ``experimentKey = offline_id``, ``offline``
and ``getOrCreateEnabled``, so a resumed upload attaches to the experiment it
created instead of failing or duplicating it; ``get-run`` for archives made
to resume an existing experiment), ``status-report`` alive, the archive's
messages (``agent.upload.replay``), ``status-report`` not alive, and
``offline-metadata`` with the run's start and end. The handshake and status
calls go straight to the client (their answers are needed now); the
messages go through an ``Outbox`` and the ``Sender``, like the daemon's, so
batching, back-off, throttling and dead letters behave the same. The sender
drains in the caller's thread (``flush``), so nothing is sent while a window
is being enqueued.

Resuming without duplicates: messages are enqueued in windows while the
sender is idle, then drained. The archive's progress (stream position) is
saved in the outbox's state table. The outbox has no "put with state" in one
transaction, so the order is: (1) save a marker {window, pending count
before}, (2) ``put_many`` the window (one transaction), (3) save the new
position and clear the marker. On the next start, before anything is sent,
a leftover marker is settled by the pending count: the window is in the
outbox if and only if the count grew by its size. A crash between Comet's
200 and the outbox's ack can still resend one request (at least once).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

from agent import __version__
from agent.api.client import CometClient
from agent.archive import ArchiveBusy, Problem, finalize_partial, read_archive
from agent.archive.files import make_private_dir
from agent.config import Settings
from agent.delivery.backoff import Backoff
from agent.delivery.outbox import Outbox, row_size
from agent.delivery.sender import Sender
from agent.delivery.sinks.rest import RestSink
from agent.errors import AgentError, ApiError
from agent.message import EXPERIMENT_KEY_RE as KEY_RE
from agent.message import now_ms
from agent.upload.progress import Progress
from agent.upload.replay import Replay, Step

MARKER = "upload:window"
WINDOW_MESSAGES = 200
WINDOW_BYTES = 16 << 20
HANDSHAKE_TRIES = 4


@dataclass
class Outcome:
    """What happened to one archive."""

    path: Path
    key: str = ""
    url: str | None = None
    messages: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    moved_to: Path | None = None


class _SendFailed(AgentError):
    """The sender could not deliver (the reason is the message)."""


class Uploader:
    """Upload archives one after the other through one outbox, sender and client."""

    def __init__(
        self,
        outbox: Outbox,
        client: CometClient,
        settings: Settings,
        progress: Progress,
        workspace: str | None = None,
        project: str | None = None,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._progress = progress
        self._workspace = workspace
        self._project = project
        self.force = False  # send an archive already uploaded again, as a new experiment
        self._backoff = Backoff.from_settings(settings)
        self._sender = Sender(
            outbox, RestSink(client), backoff=self._backoff, batch_items=settings.batch_items
        )
        # Past this long without one message delivered, the upload stops (and can be resumed).
        self._stall_s = 3 * settings.backoff_max_s + settings.http_timeout_s
        self._nap = threading.Event()
        self._rand = Random()  # noqa: S311 - jitter, not a secret

    # -- progress state ---------------------------------------------------------------------

    def _load(self, key: str) -> dict[str, Any]:
        raw = self._outbox.get_state(key)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    def _save(self, key: str, value: dict[str, Any] | None) -> None:
        self._outbox.set_state(key, json.dumps(value) if value else "")

    def settle_marker(self) -> None:
        """Settle a window a killed upload left half-recorded (see the module doc)."""
        marker = self._load(MARKER)
        if not marker:
            return
        pending = self._outbox.pending()
        state = self._load(marker["archive"])
        grew = pending == marker["pending_before"] + marker["count"]
        # Neither count: the outbox was changed by hand; assume the window is in (no duplicates).
        state["done"] = marker["done"] if pending == marker["pending_before"] else marker["end"]
        if not grew and pending != marker["pending_before"]:
            self._progress.note(f"outbox {self._outbox.path} changed since the last upload")
        self._save(marker["archive"], state)
        self._save(MARKER, None)

    # -- one archive --------------------------------------------------------------------------

    def upload(self, path: Path) -> Outcome:
        """Upload one archive (zip or partial directory); never raises for its failures."""
        outcome = Outcome(path)
        if path.is_dir():
            try:
                done = finalize_partial(path)
            except ArchiveBusy as exc:
                outcome.skipped = str(exc)
                return outcome
            except (AgentError, OSError) as exc:
                outcome.error = f"cannot finish the partial archive: {exc}"
                return outcome
            outcome.problems.extend(done.problems)
            outcome.path = path = done.path
        try:
            self._upload_zip(path, outcome)
        except (ApiError, _SendFailed) as exc:
            outcome.error = f"{exc}; run the same command again to resume"
        except AgentError as exc:
            outcome.error = str(exc)
        finally:
            self._progress.finish()
        return outcome

    def _upload_zip(self, path: Path, outcome: Outcome) -> None:
        size = path.stat().st_size
        state_key = f"upload:{path.resolve()}"
        state = self._load(state_key)
        if state.get("size") != size:
            state = {"size": size, "done": 0}
        with read_archive(path) as archive:
            # getOrCreateEnabled would attach a second upload to the first: refuse it instead.
            done_key = f"uploaded:{archive.offline_id}:{path.name}:{size}"
            earlier = self._load(done_key)
            if earlier and not self.force:
                outcome.key = archive.offline_id
                outcome.skipped = (
                    f"already uploaded as {earlier.get('url') or earlier.get('key')}; sending it "
                    "again would duplicate its data (--force-upload does that)"
                )
                return
            if earlier and not state.get("key"):  # forced: a new experiment, as the SDK does
                state["key"] = uuid.uuid4().hex
            key = state.get("key") or archive.offline_id
            if not KEY_RE.match(key):  # the SDK makes a new key too (wire §6.2)
                key = uuid.uuid4().hex
            state["key"] = outcome.key = key
            self._save(state_key, state)
            run_id, project_id, outcome.url = self._handshake(archive.experiment, key)
            self._status(run_id, project_id, key, alive=True)
            dead_before = self._outbox.stats().dead
            replay = Replay(archive, key)
            total = sum(archive.line_count(m) for m in ("messages.json", "comet_agent.jsonl"))
            self._progress.start(path.name, total)
            try:
                self._send_windows(iter(replay), state_key, state, outcome)
            finally:
                outcome.problems.extend(replay.problems)
            refused = self._outbox.stats().dead - dead_before + int(state.get("refused", 0))
            if refused:
                state["refused"] = refused
                self._save(state_key, state)
                raise _SendFailed(
                    f"Comet refused {refused} message(s) ({self._sender.status().last_error}); "
                    f"they are kept as dead letters in {self._outbox.path}"
                )
            self._status(run_id, project_id, key, alive=False)
            start, stop = archive.experiment.get("start_time"), archive.experiment.get("stop_time")
            resumed = archive.experiment.get("resume_strategy") == "get"
            self._call(
                "offline-metadata",
                {
                    "runId": run_id,
                    "startTimestamp": None if resumed or not isinstance(start, int) else start,
                    "endTimestamp": stop if isinstance(stop, int) else now_ms(),
                },
                key,
            )
        self._save(done_key, {"key": key, "url": outcome.url, "at_ms": now_ms()})
        outcome.moved_to = _move_uploaded(path)
        self._save(state_key, None)

    def _send_windows(
        self, steps: Iterator[Step], state_key: str, state: dict[str, Any], outcome: Outcome
    ) -> None:
        done = int(state["done"])
        window: list[Step] = []
        window_bytes = 0
        for step in steps:
            if step.end <= done:
                continue  # enqueued by an earlier run
            window.append(step)
            window_bytes += row_size(step.message)
            if len(window) >= WINDOW_MESSAGES or window_bytes >= WINDOW_BYTES:
                done = self._enqueue(window, done, state_key, state, outcome)
                window, window_bytes = [], 0
                self._drain()
                self._progress.update(done, outcome.messages, outcome.bytes)
        if window:
            done = self._enqueue(window, done, state_key, state, outcome)
        self._drain()
        self._progress.update(done, outcome.messages, outcome.bytes, force=True)

    def _enqueue(
        self,
        window: list[Step],
        done: int,
        state_key: str,
        state: dict[str, Any],
        outcome: Outcome,
    ) -> int:
        end = window[-1].end
        before = self._outbox.pending()
        marker = {"archive": state_key, "done": done, "end": end, "count": len(window)}
        self._save(MARKER, {**marker, "pending_before": before})
        self._outbox.put_many([step.message for step in window])
        state["done"] = end
        self._save(state_key, state)
        self._save(MARKER, None)
        outcome.messages += len(window)
        for step in window:
            msg = step.message
            outcome.bytes += len(msg.encoded_body()) + len(msg.attachment or b"")
        return end

    def _drain(self) -> None:
        """Send until the outbox is empty; raise _SendFailed when delivery stalls."""
        best = self._outbox.pending()
        since = time.monotonic()
        while best:
            if self._sender.flush(timeout_s=min(5.0, self._stall_s)):
                return
            status = self._sender.status()
            if status.paused_auth:
                raise _SendFailed(status.last_error or "Comet rejected the API key")
            pending = self._outbox.pending()
            if pending < best:
                best, since = pending, time.monotonic()
            elif time.monotonic() - since > self._stall_s:
                raise _SendFailed(
                    f"nothing delivered for {self._stall_s:g} s, {pending} message(s) waiting "
                    f"({status.last_error or 'no answer'})"
                )

    # -- the direct calls ---------------------------------------------------------------------

    def _call(self, endpoint: str, body: Mapping[str, object] | None, key: str | None) -> Any:
        """Call an endpoint whose answer is needed now, retrying what may heal."""
        for attempt in range(1, HANDSHAKE_TRIES + 1):
            try:
                return self._client.call(endpoint, body, experiment_key=key)
            except ApiError as exc:
                if not exc.retryable or attempt == HANDSHAKE_TRIES:
                    raise
                self._nap.wait(self._backoff.delay(attempt, exc.retry_after_s, self._rand))
        return None  # not reached

    def _handshake(self, experiment: dict[str, object], key: str) -> tuple[str, Any, str | None]:
        self._call("backend-version", None, None)
        body: dict[str, object] = {
            "local_timestamp": now_ms(),
            "offline": True,
            "libVersion": __version__,
        }
        if experiment.get("resume_strategy") == "get":
            answer = self._call("get-run", body, key)
        else:
            body["projectName"] = self._project or experiment.get("project_name")
            body["teamName"] = self._workspace or experiment.get("workspace")
            body["getOrCreateEnabled"] = True  # a resumed upload attaches, never duplicates
            answer = self._call("add-run", body, key)
        run_id = answer.get("runId") if isinstance(answer, dict) else None
        if not isinstance(run_id, str):
            raise _SendFailed("the handshake (logger/add/run) answered without a runId")
        focus = answer.get("focusUrl")
        url = f"{focus}{key}" if isinstance(focus, str) else None
        return run_id, answer.get("project_id"), url

    def _status(self, run_id: str, project_id: object, key: str, *, alive: bool) -> None:
        body = {
            "runId": run_id,
            "projectId": project_id if isinstance(project_id, str) else None,
            "is_alive": alive,
            "local_timestamp": now_ms(),
            "offline": True,
        }
        self._call("status-report", body, key)


def _move_uploaded(path: Path) -> Path:
    """Move an uploaded archive into the ``uploaded/`` folder next to it."""
    folder = path.parent / "uploaded"
    make_private_dir(folder)
    target = folder / path.name
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{path.stem}-{n}{path.suffix}"
    os.replace(path, target)
    return target
