"""Attach to an experiment: use the key given, create one in the workspace/project, or go offline.

Creating uses the seed's ``create-experiment`` (it answers the key and the
link); attaching to a given key checks it with one keep-alive call, whose
answer also brings the first intervals. These are the only requests besides
the keep-alive that do not go through the outbox, because the agent needs
their answers before anything else can be sent.

A create that cannot reach Comet is retried with back-off for
``ATTACH_DEADLINE_S``; if the answer of a create that did reach Comet is lost
the retry makes a second, empty experiment (the REST route has no
idempotency key; wire §3.1).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING

from agent.api import bodies
from agent.config import Settings
from agent.delivery.backoff import Backoff
from agent.errors import ApiError, ConfigError
from agent.log import get_logger
from agent.message import EXPERIMENT_KEY_RE as KEY_RE

if TYPE_CHECKING:
    from agent.api.client import CometClient

log = get_logger(__name__)

ATTACH_DEADLINE_S = 30.0
DEFAULT_PROJECT = "general"  # the SDK's default project name (wire §5.3)


@dataclass(frozen=True)
class Attachment:
    """The experiment the agent reports into."""

    experiment_key: str
    link: str | None
    owned: bool  # the agent created it: it sets the start and end times
    offline: bool
    first_answer: object = None  # the keep-alive answer when attaching to a given key


def check_key(key: str) -> str:
    """Return `key` if it looks like an experiment key, else raise ConfigError."""
    if not KEY_RE.match(key):
        raise ConfigError(
            f"experiment key {key[:60]!r} is not 32 to 50 letters and digits; "
            "copy it from the experiment's page or leave it unset to create one"
        )
    return key


def offline_attachment(settings: Settings) -> Attachment:
    """An experiment recorded into an archive: the given key, or a new one as the SDK makes it."""
    import uuid  # imports platform: only offline runs need it

    key = check_key(settings.experiment_key) if settings.experiment_key else uuid.uuid4().hex
    return Attachment(key, None, owned=True, offline=True)


def default_workspace(client: CometClient) -> str:
    """The API key's default workspace, read as comet_ml's API.get_default_workspace reads it."""
    answer = client.call("account-details")  # an ApiError (a rejected key) goes up as is
    found = answer.get("defaultWorkspaceName") if isinstance(answer, dict) else None
    if isinstance(found, str) and found:
        log.info("experiment.default_workspace", workspace=found)
        return found
    raise ConfigError(
        "creating an experiment needs a workspace and Comet named no default for this API "
        "key: set COMET_WORKSPACE or [comet] workspace, or attach with --experiment-key"
    )


def new_key() -> str:
    """A key chosen here, as the SDK chooses its own (32 lowercase hex digits)."""
    import uuid

    return uuid.uuid4().hex


def deferred_attachment(settings: Settings) -> Attachment:
    """The experiment `run` and `start` report into before Comet has answered: its key is
    chosen now (or given), so the command can have it at once; ``join`` makes it exist."""
    if settings.experiment_key:
        return Attachment(check_key(settings.experiment_key), None, owned=False, offline=False)
    # No workspace: ``join`` asks Comet for the key's default one, as the SDK does.
    return Attachment(new_key(), None, owned=True, offline=False)


def join(settings: Settings, client: CometClient, attachment: Attachment) -> Attachment:
    """Create the experiment with the chosen key, or join it if it exists; raise ApiError.

    The SDK's own get-or-create handshake (``logger/add/run`` with ``getOrCreateEnabled``,
    comet_ml ``connection_api.add_run``): whichever of the agent and an SDK in the command
    comes first creates the experiment, the other joins it. A given key that the server does
    not know is created as well, as ``comet_ml.start(experiment_key=K)`` does.
    """
    from agent import __version__
    from agent.message import now_ms

    body: dict[str, object] = {
        "local_timestamp": now_ms(),
        "offline": False,
        "projectName": settings.project_name,
        "teamName": settings.workspace or default_workspace(client),
        "libVersion": __version__,
        "getOrCreateEnabled": True,
    }
    answer = client.call("add-run", body, experiment_key=attachment.experiment_key)
    if not isinstance(answer, dict) or not isinstance(answer.get("runId"), str):
        raise ApiError(f"logger/add/run: Comet answered without a runId ({str(answer)[:80]!r})")
    focus = answer.get("focusUrl")
    link = f"{focus}{attachment.experiment_key}" if isinstance(focus, str) else None
    return Attachment(attachment.experiment_key, link, attachment.owned, offline=False)


def attach(
    settings: Settings,
    client: CometClient,
    *,
    stop: threading.Event,
    deadline_s: float = ATTACH_DEADLINE_S,
    rand: Random | None = None,
) -> Attachment:
    """Attach to the configured key, or create an experiment; raise ApiError/ConfigError."""
    if settings.experiment_key:
        key = check_key(settings.experiment_key)
        try:
            answer = client.call("keep-alive", experiment_key=key)
        except ApiError as exc:
            if not exc.retryable:
                raise
            # Comet is unreachable: the outbox keeps everything until it is back.
            log.warning("experiment.unverified", experiment_key=key, error=str(exc))
            answer = None
        return Attachment(key, None, owned=False, offline=False, first_answer=answer)
    workspace = settings.workspace or default_workspace(client)
    body = bodies.create_experiment(
        workspace, settings.project_name or DEFAULT_PROJECT, settings.experiment_name
    )
    backoff = Backoff(wait_initial=0.5, wait_max=5.0)
    rand = rand or Random()  # noqa: S311 - jitter, not secrets
    waited = 0.0
    attempt = 0
    while True:
        try:
            answer = client.call("create-experiment", body)
            break
        except ApiError as exc:
            attempt += 1
            wait_s = backoff.delay(attempt, exc.retry_after_s, rand)
            if not exc.retryable or waited + wait_s > deadline_s or stop.is_set():
                raise
            log.warning("experiment.create_retry", error=str(exc), wait_s=round(wait_s, 1))
            if stop.wait(wait_s):
                raise
            waited += wait_s
    new_key: object = answer.get("experimentKey") if isinstance(answer, dict) else None
    if not isinstance(new_key, str) or not KEY_RE.match(new_key):
        raise ApiError(
            f"create-experiment: Comet answered without a usable experimentKey "
            f"({str(answer)[:80]!r})"
        )
    link = answer.get("link")
    return Attachment(new_key, link if isinstance(link, str) else None, owned=True, offline=False)
