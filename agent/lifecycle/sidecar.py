"""Sidecar hand-over of the experiment key through a shared file (``--experiment-key-file``).

Decided at start, in this order:

1. a key is already configured (``--experiment-key``, ``COMET_EXPERIMENT_KEY``):
   attach to it and write it to the file for the training container;
2. the file exists: read the key from it and attach;
3. the agent can create an experiment (a workspace is configured, or it is
   offline) and it leads (it is not a follower of a distributed job): create
   one and write its key to the file;
4. otherwise wait for another container to write the file, for at most
   ``[agent] key_file_timeout_s`` (default 300 s), then fail with exit 1.

The file holds the key alone on one line; it is written to a temporary name
and renamed, so a reader never sees half a key.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from agent.config import Settings, replace
from agent.errors import AgentError, ConfigError
from agent.lifecycle.attach import check_key
from agent.log import get_logger

logger = get_logger(__name__)
POLL_S = 0.2


def resolve_key(
    settings: Settings,
    path: str | None,
    stop: threading.Event | None = None,
    *,
    leader: bool = True,
) -> Settings:
    """Return settings carrying the experiment key to use, waiting for the file if need be.

    A follower of a distributed job never creates an experiment of its own: it needs the
    leader's key, from the configuration or the file.
    """
    if settings.experiment_key:
        return settings  # case 1: the agent publishes the key once attached
    if not path:
        if leader:
            return settings
        raise ConfigError(
            "this agent is a follower (not global rank 0): give it the leader's experiment key "
            "with --experiment-key, COMET_EXPERIMENT_KEY or --experiment-key-file, or set "
            "[agent] role = leader"
        )
    if leader and (settings.offline or settings.workspace):
        return settings  # case 3: create, then publish
    target = Path(path)
    stop = stop or threading.Event()
    waited = 0.0
    announced = False
    while True:
        key = read_key(target)
        if key is not None:
            logger.info("sidecar.key_read", path=str(target))
            return replace(settings, experiment_key=key)
        if waited >= settings.key_file_timeout_s:
            raise AgentError(
                f"no experiment key appeared in {target} within {settings.key_file_timeout_s:g} s;"
                " start the training container first, or raise [agent] key_file_timeout_s"
            )
        if not announced:
            logger.info("sidecar.waiting", path=str(target), timeout_s=settings.key_file_timeout_s)
            announced = True
        if stop.wait(POLL_S):
            raise AgentError(f"stopped while waiting for {target}")
        waited += POLL_S


def read_key(path: Path) -> str | None:
    """Return the key in `path`, None while it does not exist (or is still empty)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise AgentError(f"cannot read the experiment key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"the experiment key file {path} is not text (binary?); it must hold one "
            "experiment key, 32-50 letters and digits"
        ) from None
    if not text:
        return None
    try:
        return check_key(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def publish_key(path: str, key: str) -> None:
    """Write `key` to `path` atomically (0644: the training container may run as another user)."""
    target = Path(path)
    with contextlib.suppress(ConfigError):  # whatever is there is not a key: replace it
        if read_key(target) == key:
            return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(key + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        raise AgentError(
            f"cannot write the experiment key to {target}: {exc.strerror}; "
            "check the shared volume is writable"
        ) from None
    logger.info("sidecar.key_written", path=str(target))
