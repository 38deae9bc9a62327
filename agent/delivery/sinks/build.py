"""What builds the sinks: the REST sink, the offline archive, the local copy.

``Delivery`` asks a ``SinkBuilder`` for them and owns (and closes) what it gets.
Each is made where a run needs it, with its fallbacks and its log lines: the
REST sink loads requests at its first send (`run` spawns the command first; an
offline run never loads it), the offline archive goes elsewhere under `run`
when its directory is unusable or held, and the local copy is best effort.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent import log
from agent.config import Settings
from agent.dirs import scratch_dirs
from agent.errors import AgentError
from agent.message import now_ms

if TYPE_CHECKING:
    from agent.delivery.sinks.offline import OfflineSink
    from agent.delivery.sinks.rest import LazyRestSink

logger = log.get_logger(__name__)


@dataclass(frozen=True)
class SinkBuilder:
    """Make the sinks of one run from its settings."""

    settings: Settings
    started_ms: int = field(default_factory=now_ms)
    # `run` and `start` hand their key to the command's SDK, which may write an archive of
    # its own with it: ours joins that experiment on upload, in either order.
    hands_key: bool = False
    # `run` only: where the offline archive goes when the offline directory is unusable or
    # held (the state directory's own `offline/`, then scratch directories); None: it fails.
    fallback: Path | None = None
    # How often an archive records its stop time and fsyncs while written to (the daemon's
    # checkpoint job does it between writes); the default is OfflineSink's own.
    checkpoint_s: float = 10.0

    def rest(self) -> LazyRestSink:
        """The REST sink; requests loads at its first send, once the experiment is joined."""
        from agent.delivery.sinks.rest import LazyRestSink, RestSink

        settings = self.settings

        def make() -> RestSink:
            from agent.api.client import CometClient

            return RestSink(CometClient.from_settings(settings))

        return LazyRestSink(make)

    def local_copy(self, key: str) -> OfflineSink | None:
        """The online run's local copy (``local_copy``); None when off or unusable (logged)."""
        s = self.settings
        if not s.local_copy:
            return None
        directory = s.local_copy_directory
        try:
            # The experiment exists online: should the copy ever be uploaded, it adds to it.
            return self.archive(directory, key, given=True)
        except (OSError, AgentError) as exc:
            logger.warning(
                "local_copy.unavailable",
                directory=str(directory),
                error=getattr(exc, "strerror", None) or str(exc),
                hint="sending goes on; set COMET_OFFLINE_DIRECTORY to a writable place",
            )
            return None

    def offline(self, key: str) -> OfflineSink:
        """The offline archive; under `run`, elsewhere when its directory is unusable or held."""
        directory = self.settings.offline_directory
        try:
            return self.archive(directory, key)
        except (OSError, AgentError) as exc:
            if self.fallback is None:
                raise
            from agent.archive.files import ArchiveBusy
            from agent.archive.format import PARTIAL_SUFFIX

            error = getattr(exc, "strerror", None) or str(exc)
            if not isinstance(exc, ArchiveBusy):
                _drop_empty_partial(directory / f"{key}{PARTIAL_SUFFIX}")
        for where in itertools.chain([self.fallback], scratch_dirs()):
            try:
                archive = self.archive(where, key)
            except (OSError, AgentError):
                continue
            logger.warning(
                "offline.fallback", error=error, directory=str(directory), instead=str(where)
            )
            return archive
        raise AgentError(
            f"cannot open an offline archive in {directory} ({error}) nor in a temporary "
            "directory; free space or set [comet] offline_directory to a writable place"
        )

    def archive(self, directory: Path, key: str, *, given: bool = False) -> OfflineSink:
        """An archive of `key` in `directory` (`given`: the experiment may exist already)."""
        from agent.delivery.sinks.offline import OfflineSink

        s = self.settings
        given = given or bool(s.experiment_key) or self.hands_key
        archive = OfflineSink(
            directory,
            key,
            workspace=s.workspace,
            project=s.project_name,
            start_ms=self.started_ms,
            resume_strategy="get_or_create" if given else "create",
            user_provided_key=given,
            checkpoint_s=self.checkpoint_s,
        )
        for done in archive.recovered:
            logger.warning(
                "archive.recovered",
                path=str(done.path),
                lines=done.lines,
                problems=list(done.problems),
            )
        return archive


def _drop_empty_partial(path: Path) -> None:
    """Remove the partial directory a failed open left with nothing but its lock in it."""
    from agent.archive.format import LOCK

    try:
        if {p.name for p in path.iterdir()} <= {LOCK}:
            (path / LOCK).unlink(missing_ok=True)
            path.rmdir()
    except OSError:
        pass  # not there, or not empty: left as it is
