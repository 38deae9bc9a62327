"""comet-agent's hook for a comet_ml SDK inside ``comet-agent run``: join the agent's experiment.

``comet-agent run`` puts this directory first on the command's ``PYTHONPATH`` and names its
experiment key in ``COMET_AGENT_SDK_KEY``. Python imports this module at start-up (before the
user's code); it imports nothing of comet_ml. Only when the command itself imports comet_ml are
three of its functions wrapped, and only for that one key:

* ``RestServerConnection.add_run`` (``Experiment()``, ``comet_ml.start()``) asks with
  ``getOrCreateEnabled``: whoever comes first, the agent or the SDK, creates the experiment and
  the other joins it; without this ``Experiment()`` is refused ("already uploaded") whenever the
  agent came first.
* ``RestServerConnection.get_run`` (``ExistingExperiment()``) gets or creates too, so an
  ``ExistingExperiment`` that runs before the agent's handshake has landed is not refused.
* ``OfflineExperiment()`` without a key of its own records into that key with the
  ``get_or_create`` strategy, so its archive and the agent's land in one experiment, uploaded
  in either order (``comet upload`` or ``comet-agent upload``).
* When the agent records offline (``COMET_AGENT_SDK_OFFLINE=1``), ``Experiment()`` (the class
  itself, not its subclasses) gives an ``OfflineExperiment`` instead: no network attempt, no
  failure for the lack of an API key, the same experiment.

Any failure here leaves the SDK as it was. Then the next ``sitecustomize`` on the path, if
any, is imported, as the SDK's own bootstrap does (``comet_ml/bootstrap/sitecustomize.py``).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

KEY_VARIABLE = "COMET_AGENT_SDK_KEY"
OFFLINE_VARIABLE = "COMET_AGENT_SDK_OFFLINE"
_PATCHED = ("comet_ml.connection.connection_api", "comet_ml.offline", "comet_ml._online")


def _patch_connection(module: ModuleType, key: str) -> None:
    cls = module.RestServerConnection
    add_run = cls.add_run
    get_run = cls.get_run

    def add_run_joining(
        self: Any,
        project_name: Any,
        workspace: Any,
        offline: bool = False,
        get_or_create_mode: bool = False,
    ) -> Any:
        if self.experiment_id == key:
            get_or_create_mode = True
        return add_run(self, project_name, workspace, offline, get_or_create_mode)

    def get_run_joining(self: Any, previous_experiment: Any) -> Any:
        if previous_experiment == key and self.experiment_id == key:
            env = os.environ
            return add_run(
                self, env.get("COMET_PROJECT_NAME"), env.get("COMET_WORKSPACE"), False, True
            )
        return get_run(self, previous_experiment)

    cls.add_run = add_run_joining
    cls.get_run = get_run_joining


def _patch_offline(module: ModuleType, key: str) -> None:
    cls = module.OfflineExperiment
    init = cls.__init__

    def init_joining(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("experiment_key") is None and not args:
            kwargs["experiment_key"] = key
            kwargs.setdefault("_resume_strategy", "get_or_create")
        init(self, *args, **kwargs)

    cls.__init__ = init_joining


def _patch_online(module: ModuleType, key: str) -> None:
    if os.environ.get(OFFLINE_VARIABLE) != "1":
        return
    cls = module.Experiment

    def new(klass: type, *args: Any, **kwargs: Any) -> Any:
        # Experiment(api_key, project_name, workspace, ...): the first three by position.
        if klass is cls and len(args) <= 3:
            from comet_ml.offline import OfflineExperiment

            names = ("api_key", "project_name", "workspace")
            named = {names[i]: value for i, value in enumerate(args)}  # any Python 3
            return OfflineExperiment(**named, **kwargs)
        return object.__new__(klass)

    cls.__new__ = staticmethod(new)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the two comet_ml modules so they are patched once executed."""

    def __init__(self, key: str) -> None:
        self._key = key

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _PATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module
        key = self._key

        def exec_module(module: ModuleType) -> None:
            run(module)
            try:
                if fullname == _PATCHED[0]:
                    _patch_connection(module, key)
                elif fullname == _PATCHED[1]:
                    _patch_offline(module, key)
                else:
                    _patch_online(module, key)
            except Exception:  # noqa: BLE001, S110 - an SDK we do not know: leave it as it is
                pass

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _install() -> None:
    key = os.environ.get(KEY_VARIABLE, "")
    if key and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(key))


def _chain() -> None:
    """Import the next sitecustomize on the path (the user's or the environment's), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


if __name__ == "sitecustomize":
    with contextlib.suppress(Exception):  # never in the way of the command
        _install()
    _chain()
