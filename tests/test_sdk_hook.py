"""The command's sitecustomize hook: present, lazy, and never in the way of the user's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.config import Settings
from agent.wrap.process import child_env

KEY = "0123456789abcdef0123456789abcdef"


def _python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return done.stdout + done.stderr


def test_the_hook_imports_nothing_of_comet_ml_and_chains_to_the_users(tmp_path: Path) -> None:
    """The user's own sitecustomize still runs; comet_ml is not imported by the hook."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sitecustomize.py").write_text("print('user sitecustomize ran')\n")
    env = child_env({"PYTHONPATH": str(mine), "PATH": "/usr/bin:/bin"}, Settings(), KEY)
    out = _python("import sys; print('comet_ml' in sys.modules)", env)
    assert out.splitlines() == ["user sitecustomize ran", "False"]


def test_without_a_key_the_hook_does_nothing(tmp_path: Path) -> None:
    """No COMET_AGENT_SDK_KEY (a grandchild that cleared it): no finder installed."""
    env = child_env({"PATH": "/usr/bin:/bin"}, Settings(), KEY)
    del env["COMET_AGENT_SDK_KEY"]
    out = _python(
        "import sys; print([type(f).__name__ for f in sys.meta_path if 'Finder' == "
        "type(f).__name__[-6:] and type(f).__module__ == 'sitecustomize'])",
        env,
    )
    assert out.strip() == "[]"
