"""No shell anywhere: the agent's code never asks for one, and `run` never makes one.

Bar: no call in agent/ passes ``shell=True`` or calls os.system, os.popen,
subprocess.getoutput/getstatusoutput or asyncio's create_subprocess_shell;
`comet-agent run -- 'echo $HOME; touch pwned'` looks for a command of that
name (127, nothing created), and shell syntax in arguments reaches the
command byte for byte.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

from tests.helpers import ROOT, run_agent

SHELL_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
}


def _dotted(node: ast.expr) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _shell_uses(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name[-2:] in SHELL_CALLS:
                found.append(f"{filename}:{node.lineno} {'.'.join(name)}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    found.append(f"{filename}:{node.lineno} shell={ast.unparse(kw.value)}")
        if isinstance(node, ast.ImportFrom) and node.module in {"os", "subprocess", "asyncio"}:
            for alias in node.names:
                if (node.module, alias.name) in SHELL_CALLS:
                    found.append(f"{filename}:{node.lineno} from {node.module} import {alias.name}")
    return found


def test_the_checker_sees_each_form() -> None:
    """The check itself: every form it bans is caught (else the next test proves nothing)."""
    bad = (
        "import os, subprocess\nfrom os import system\n"
        "subprocess.run('ls', shell=True)\nsubprocess.Popen(['ls'], shell=flag)\n"
        "os.system('ls')\nos.popen('ls')\nsubprocess.getoutput('ls')\n"
    )
    assert len(_shell_uses(bad, "x.py")) == 6
    assert _shell_uses("subprocess.run(['ls'], shell=False)\n", "y.py") == []


def test_agent_code_never_uses_a_shell() -> None:
    """Every module under agent/, parsed: no shell=True, no os.system or os.popen."""
    found: list[str] = []
    files = sorted((ROOT / "agent").rglob("*.py"))
    assert len(files) > 50
    for path in files:
        found += _shell_uses(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []


def test_run_never_interprets_its_command(offline_env: dict[str, str], tmp_path: Path) -> None:
    """A shell line as the command is a command name that does not exist: 127, nothing run."""
    done = run_agent(["run", "--", "echo $HOME; touch pwned"], offline_env, cwd=tmp_path)
    assert done.returncode == 127
    assert done.stderr.strip() == "comet-agent: echo $HOME; touch pwned: command not found"
    assert not (tmp_path / "pwned").exists()
    assert str(Path(offline_env["HOME"])) not in done.stdout


def test_shell_syntax_in_arguments_arrives_verbatim(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """$VARS, ;, backticks, globs and quotes in arguments reach the command unchanged."""
    words = ["$HOME", "; touch pwned", "`touch pwned2`", "$(touch pwned3)", "*", "'\"", "a b"]
    show = "import json, sys; print(json.dumps(sys.argv[1:]))"
    env = {**offline_env, "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state")}
    done = run_agent(["run", "--", sys.executable, "-c", show, *words], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == words
    assert not any((tmp_path / name).exists() for name in ("pwned", "pwned2", "pwned3"))
