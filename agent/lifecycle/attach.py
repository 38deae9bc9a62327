"""The experiment the agent reports into: a key chosen here (or given), or an offline one.

``deferred_attachment`` gives the key at once, so the command can have it before Comet
has answered; ``join`` makes the experiment exist through the SDK's get-or-create
handshake (``logger/add/run``), run beside the command and retried by the agent. It is
the one request besides the keep-alive that does not go through the outbox: nothing may
be sent for an experiment before it exists. Get-or-create is idempotent, so a join whose
answer was lost, retried, makes no second experiment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.config import Settings
from agent.errors import ApiError, ConfigError
from agent.log import get_logger
from agent.message import EXPERIMENT_KEY_RE as KEY_RE

if TYPE_CHECKING:
    from agent.api.client import CometClient

log = get_logger(__name__)

DEFAULT_PROJECT = "general"  # the SDK's default project name (wire §5.3)


@dataclass(frozen=True)
class Attachment:
    """The experiment the agent reports into."""

    experiment_key: str
    link: str | None
    owned: bool  # the agent created it: it sets the start and end times
    offline: bool


def check_key(key: str) -> str:
    """Return `key` if it looks like an experiment key, else raise ConfigError."""
    if not KEY_RE.match(key):
        raise ConfigError(
            f"experiment key {key[:60]!r} is not 32 to 50 letters and digits; "
            "copy it from the experiment's page or leave it unset to create one"
        )
    return key


def planned_attachment(settings: Settings) -> Attachment:
    """The experiment a run reports into, known before anything is opened: offline or not,
    and its key (given, or chosen here); online, ``join`` makes it exist later."""
    return offline_attachment(settings) if settings.offline else deferred_attachment(settings)


def offline_attachment(settings: Settings) -> Attachment:
    """An experiment recorded into an archive: the given key, or a new one as the SDK makes it."""
    key = check_key(settings.experiment_key) if settings.experiment_key else new_key()
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
    """A key chosen here, as the SDK chooses its own: uuid.uuid4().hex, 32 lowercase hex digits."""
    # What uuid4 does (random bytes, version 4, RFC 4122 variant) without importing uuid and
    # platform, ~4 ms of `run`'s start before its command runs.
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


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
