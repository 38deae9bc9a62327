"""Process hardening for the commands that hold the API key: no core dumps of the agent.

A core dump is the whole address space, the API key included, written where
the system says (a ``core`` file in the working directory, systemd-coredump's
journal, apport's crash reports that users attach to bug reports). So
``start``, ``run`` and ``upload`` lower their own soft ``RLIMIT_CORE`` to 0
at start-up; systemd-coredump and apport honour it too.

The hard limit is left as it was, so the limit can be given back: the
command that ``run`` wraps is the user's, and may want its core dumps. Child
processes inherit limits at fork, so ``run`` puts the soft limit back for the
moment it spawns the command (``restored_for_child``) and lowers it again
right after. A crash of the agent inside that window (the length of one
``fork``) could still dump; the alternative, ``preexec_fn``, is unsafe in a
process with threads, as the ``subprocess`` documentation warns.

``prctl(PR_SET_DUMPABLE, 0)`` was considered and left out: it also blocks
same-user debuggers (``py-spy dump`` of a wedged agent) and hides
``/proc/<pid>/environ`` from the user who started it, while the same user
can read the key file anyway; the core limit alone closes the dump path.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


@dataclass(frozen=True)
class CoreLimit:
    """``RLIMIT_CORE`` as it was before the agent lowered it: (soft, hard)."""

    soft: int
    hard: int


def disable_core_dumps() -> CoreLimit | None:
    """Set this process's soft core limit to 0; return the limit it had (None if unchanged)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        if soft != 0:
            resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (OSError, ValueError):  # a sandbox that forbids it: nothing to do, nothing to undo
        return None
    return CoreLimit(soft, hard)


@contextmanager
def restored_for_child(saved: CoreLimit | None) -> Iterator[None]:
    """Give the process its original core limit back for the block (spawn the child in it)."""
    if saved is None or saved.soft == 0:
        yield
        return
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (saved.soft, saved.hard))
    except (OSError, ValueError):
        yield  # cannot restore: the child runs with the lowered limit, as before
        return
    try:
        yield
    finally:
        with suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, saved.hard))
