"""`comet-agent run`: the wrapper, the command and its children, seen from /proc.

Bar: no piece of the canary key in the command line or title of the wrapper,
the command or a grandchild; the key is in the command's environment only
when it was in the user's (COMET_API_KEY), never when it came from a file;
the wrapper cannot dump core while the command (and its children) keep the
user's core limit; the wrapper's log (both formats, DEBUG) holds no key
although the server echoes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, wait_until
from tests.security.leaks import (
    can_raise_core_limit,
    core_limits,
    environ_of,
    launcher,
    leaks_in,
    proc_text,
    tree_leaks,
)
from tests.security.test_start_secrets import ECHO, FAST

CORE_SOFT = 1 << 20
# The command: starts a grandchild, says both pids, waits to be released.
COMMAND = """
import json, os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1] + ".tmp", "w") as fh:
    json.dump({"child": os.getpid(), "grandchild": grandchild.pid}, fh)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
print("training step 1", flush=True)
deadline = time.monotonic() + 30
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.05)
grandchild.kill()
grandchild.wait()
"""


@pytest.mark.parametrize(("fmt", "key_from"), [("json", "file"), ("console", "env")])
def test_no_process_shows_the_key(
    server: CometStandIn, env: dict[str, str], tmp_path: Path, fmt: str, key_from: str
) -> None:
    """cmdline, title, environ and core limits of wrapper, command and grandchild."""
    server.answer_keepalive(FAST)
    server.fail("log-other", status=400, body=ECHO)
    run_env = {
        **env,
        "COMET_AGENT_LOG_LEVEL": "debug",
        "COMET_AGENT_LOG_FORMAT": fmt,
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
    }
    if key_from == "file":
        key_file = tmp_path / "api-key"
        key_file.write_text(CANARY_KEY + "\n")
        del run_env["COMET_API_KEY"]
        run_env["COMET_AGENT_API_KEY_FILE"] = str(key_file)
    script, pids_file, release = tmp_path / "cmd.py", tmp_path / "pids.json", tmp_path / "go"
    script.write_text(COMMAND)
    core = can_raise_core_limit(CORE_SOFT)
    args = ["run", "--", sys.executable, str(script), str(pids_file), str(release)]
    wrapper = AgentProcess(
        args, run_env, cwd=tmp_path, argv=launcher(args, core_soft=CORE_SOFT if core else None)
    )
    try:
        wait_until(pids_file.exists, timeout_s=60)
        pids = {"wrapper": wrapper.pid, **json.loads(pids_file.read_text())}
        seen = {
            name: {
                "cmdline": proc_text(pid, "cmdline"),
                "comm": proc_text(pid, "comm"),
                "environ": environ_of(pid),
                "core": core_limits(pid),
            }
            for name, pid in pids.items()
        }
    finally:
        release.write_text("")
    assert wrapper.wait(timeout_s=60) == 0, wrapper.stderr[-3000:]

    for name, facts in seen.items():
        assert leaks_in(facts["cmdline"]) == [], name
        assert leaks_in(facts["comm"]) == [], name
    for name in ("child", "grandchild"):
        inherited = seen[name]["environ"].get("COMET_API_KEY")
        assert inherited == (CANARY_KEY if key_from == "env" else None), name
        assert (
            leaks_in(
                json.dumps({k: v for k, v in seen[name]["environ"].items() if k != "COMET_API_KEY"})
            )
            == []
        ), name
        assert seen[name]["environ"]["COMET_EXPERIMENT_KEY"]  # what the command is told instead
    assert seen["wrapper"]["core"][0] == "0"
    if core:
        assert seen["child"]["core"] == (str(CORE_SOFT), seen["wrapper"]["core"][1])
        assert seen["grandchild"]["core"] == seen["child"]["core"]
    assert "stand-in does not like ***" in wrapper.stderr  # the echo came back, masked
    assert leaks_in(wrapper.stderr + wrapper.stdout) == []
    assert "training step 1" in wrapper.stdout
    assert tree_leaks(tmp_path / "state") == {}
    assert server.output_lines()  # the command's output went out, and with it no key
    assert CANARY_KEY not in server.all_text()
