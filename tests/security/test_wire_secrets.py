"""What goes on the wire: the key in the Authorization header only; no token from a git remote.

Bar: to a server that answers 401 to everything, every request the agent
makes (start, run, api, doctor, upload) carries the canary key in the
Authorization header and nowhere else: not in the path, the query, another
header or the body (raw, gzip undone), except the apiKey field docs/comet-wire.md puts
in the clientlib handshake. A repository whose origin is
``https://user:token@host/x.git`` reaches Comet as ``https://host/x.git``,
and the token is nowhere in what the agent sends, logs or keeps.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.comet_routes import ROUTES
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, clean_env, run_agent
from tests.security.leaks import leaks_in, tree_leaks

GIT = shutil.which("git") or ""
IN_BODY = {r.name for r in ROUTES if r.api_key_in_body}
TOKEN = "ghpTOKENs3cr3tV4lue99"  # noqa: S105 - a made-up token: what must not leak


def test_key_only_in_the_authorization_header_of_refused_requests(
    server: CometStandIn, tmp_path: Path
) -> None:
    """A server that knows another key (and one refusing the upload's handshake): each
    refused request holds ours in one place."""
    base = {
        "COMET_API_KEY": CANARY_KEY,
        "COMET_WORKSPACE": "ws",
        "COMET_PROJECT_NAME": "proj",
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline"),
    }
    with CometStandIn(api_key="y" * 25) as refusing:
        env = clean_env(tmp_path / "home", {**base, "COMET_URL_OVERRIDE": refusing.url})
        outputs = [
            run_agent(["start"], env, cwd=tmp_path),
            run_agent(["api", "keep-alive", "--experiment-key", "a" * 32], env, cwd=tmp_path),
            run_agent(["doctor"], env, cwd=tmp_path),
            run_agent(["run", "--", sys.executable, "-c", "print(1)"], env, cwd=tmp_path),
        ]
        requests = refusing.received(ok_only=False)
    env = clean_env(tmp_path / "home", {**base, "COMET_URL_OVERRIDE": server.url})
    offline_run = run_agent(
        ["run", "--", sys.executable, "-c", "print(2)"], {**env, "COMET_OFFLINE": "1"}
    )
    assert offline_run.returncode == 0, offline_run.stderr
    server.fail("add-run", status=401, times=5)  # the handshake carries the key in its body
    outputs.append(run_agent(["upload"], env, cwd=tmp_path))
    requests += server.received("add-run", ok_only=False)

    # Each stops at the refusal; `run` returns its command's status (monitoring trouble never
    # fails training) and keeps the run offline.
    assert [o.returncode for o in outputs] == [1, 1, 1, 0, 1]
    assert {r.route for r in requests} == {
        "keep-alive",
        "backend-version",
        "add-run",
    }
    for rec in requests:
        assert rec.status == 401, rec.route
        assert rec.headers["Authorization"] == CANARY_KEY
        others = {k: v for k, v in rec.headers.items() if k != "Authorization"}
        assert leaks_in(f"{rec.path} {rec.query} {others}") == [], rec.route
        raw = gzip.decompress(rec.raw) if others.get("Content-Encoding") == "gzip" else rec.raw
        if rec.route in IN_BODY:
            body = json.loads(raw)
            assert body.pop("apiKey") == CANARY_KEY
            raw = json.dumps(body).encode()
        assert leaks_in(raw) == [], rec.route
    for out in outputs:
        assert leaks_in(out.stdout + out.stderr) == []


def _git(repo: Path, *args: str) -> None:
    subprocess.run([GIT, *args], cwd=repo, check=True, capture_output=True, timeout=30)


@pytest.mark.skipif(not GIT, reason="git is not installed")
def test_origin_credentials_are_stripped_end_to_end(
    server: CometStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    """`run` inside a clone whose origin holds a token: Set Git Metadata gets the bare URL."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@x",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "a",
    )
    _git(repo, "remote", "add", "origin", f"https://user:{TOKEN}@git.example.com/team/x.git")
    (repo / "train.py").write_text("print('with a change')\n")  # an uncommitted patch too
    _git(repo, "add", "train.py")
    state = tmp_path / "state"
    run_env = {**env, "COMET_AGENT_STATE_DIRECTORY": str(state), "COMET_AGENT_LOG_LEVEL": "debug"}
    done = run_agent(["run", "--", sys.executable, "train.py"], run_env, cwd=repo)
    assert done.returncode == 0, done.stderr
    bodies = [r.body for r in server.received("set-git-metadata")]
    assert len(bodies) == 1
    assert bodies[0]["origin"] == "https://git.example.com/team/x.git"  # type: ignore[index]
    assert server.count("upload-git-patch") == 1
    patch = server.received("upload-git-patch")[0]
    assert TOKEN not in server.all_text()
    assert TOKEN.encode() not in patch.raw
    assert TOKEN not in done.stdout + done.stderr
    assert all(TOKEN.encode() not in p.read_bytes() for p in state.rglob("*") if p.is_file())
    assert tree_leaks(state) == {}
