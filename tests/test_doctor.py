"""`comet-agent doctor` against the loopback stand-in: each failure named with its fix.

The command runs as a subprocess (what a user types); the GPU line is checked
in-process with the fake NVML, the only fake.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from agent.config import Settings
from agent.delivery.outbox import Outbox
from agent.doctor.check import FAIL, OK, SKIP, WARN
from agent.doctor.local import gpu_check
from agent.doctor.server import tls_check
from agent.message import Kind, Message
from tests.agent_process import AgentProcess
from tests.fakes import nvml as fake_nvml
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, run_agent, wait_until

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(name="doctor_env")
def _doctor_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The stand-in's environment with state and offline directories of the test's own."""
    return {
        **env,
        "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state"),
        "COMET_OFFLINE_DIRECTORY": str(tmp_path / "offline"),
    }


def _doctor(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, dict[str, str]]:
    """Run doctor; return its exit status, its whole output, and each check's line by name."""
    done = run_agent(["doctor", *args], env, cwd=cwd, timeout_s=60)
    text = done.stdout + done.stderr
    assert CANARY_KEY not in text
    lines = {}
    for line in done.stdout.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0] in ("OK", "WARN", "FAIL", "SKIP"):
            lines[parts[1]] = f"{parts[0]} {parts[2]}"
    return done.returncode, text, lines


def test_all_good_exits_0(server: CometStandIn, doctor_env: dict[str, str], tmp_path: Path) -> None:
    """Reachable server, accepted key, synced clock, fresh directories: exit 0, no FAIL line."""
    code, text, lines = _doctor(doctor_env, tmp_path)
    assert code == 0, text
    assert "FAIL" not in text
    assert lines["api-key"] == "OK set, from COMET_API_KEY"
    assert lines["server"].startswith(f"OK {server.url} backend 4.8.0, round trip ")
    assert lines["auth"] == "OK the key from COMET_API_KEY reads workspace 'ws'"
    assert lines["clock"] == "OK within 2 s of the server's"
    assert lines["state-dir"] == (
        f"OK {tmp_path / 'state'} does not exist yet; it is created 0700 when needed"
    )
    assert lines["outbox"] == f"OK no outbox yet in {tmp_path / 'state'}"
    assert lines["agent"] == f"SKIP no agent has run on {tmp_path / 'state'}"
    assert [r.route for r in server.received()] == ["backend-version", "registry-model-count"]
    assert server.received("registry-model-count")[0].query == {"workspaceName": "ws"}


def test_server_down_fails_with_the_fix(doctor_env: dict[str, str], tmp_path: Path) -> None:
    """Nothing listening: the server check fails naming the URL to fix; exit 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: connections are refused
    url = f"http://127.0.0.1:{port}/clientlib/"
    code, text, lines = _doctor({**doctor_env, "COMET_URL_OVERRIDE": url}, tmp_path)
    assert code == 1, text
    assert lines["server"] == (
        f"FAIL backend-version: cannot reach 127.0.0.1:{port}: Connection refused; fix: check "
        f"[comet] url_override / COMET_URL_OVERRIDE ({url}), the network and any proxy in between"
    )
    assert lines["auth"] == "SKIP skipped: the server cannot be reached"


def test_rejected_key_names_its_source(
    server: CometStandIn, doctor_env: dict[str, str], tmp_path: Path
) -> None:
    """A key the server answers 401 to: the auth check fails naming the key file, exit 1."""
    key_file = tmp_path / "api-key"
    key_file.write_text("WRONGkeyWRONGkeyWRONGkey0\n")
    env = {k: v for k, v in doctor_env.items() if k != "COMET_API_KEY"}
    code, text, lines = _doctor(env, tmp_path, "--api-key-file", str(key_file))
    assert code == 1, text
    assert lines["server"].startswith(f"OK {server.url} answered HTTP 401, round trip")
    assert lines["auth"] == (
        "FAIL Comet rejected the API key from --api-key-file; fix: replace the key in "
        "--api-key-file with a valid one (Comet: Account settings, API keys)"
    )
    assert "WRONGkey" not in text


def test_clock_skew_is_a_warning(
    server: CometStandIn, doctor_env: dict[str, str], tmp_path: Path
) -> None:
    """A server an hour ahead: the clock check warns with the fix; warnings still exit 0."""
    server.date_offset_s = 3600.0
    code, text, lines = _doctor(doctor_env, tmp_path)
    assert code == 0, text
    assert lines["clock"].startswith("WARN this clock is ")
    assert " s behind the server's: sample timestamps would be off; fix: sync it" in text
    shown = int(lines["clock"].split()[4])
    assert 3598 <= shown <= 3602


def test_open_state_dir_fails_with_chmod(
    server: CometStandIn, doctor_env: dict[str, str], tmp_path: Path
) -> None:
    """A state directory others can read (0777): failing check, the chmod that fixes it."""
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    code, text, lines = _doctor(doctor_env, tmp_path)
    assert code == 1, text
    assert lines["state-dir"] == (
        f"FAIL {state} is mode 0777: other users can read what the agent keeps there; "
        f"fix: chmod 700 {state}"
    )


def test_json_shape(server: CometStandIn, doctor_env: dict[str, str], tmp_path: Path) -> None:
    """--json: {"ok", "checks": [{name, status, detail, fix, data}]}, every check, in order."""
    done = run_agent(["doctor", "--json"], doctor_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert CANARY_KEY not in done.stdout
    report = json.loads(done.stdout)
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    assert names == [
        "config",
        "api-key",
        "server",
        "auth",
        "clock",
        "tls",
        "gpu",
        "cgroup",
        "git",
        "state-dir",
        "offline-dir",
        "outbox",
        "agent",
        "systemd",
    ]
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail", "fix", "data"}
        assert check["status"] in (OK, WARN, FAIL, SKIP)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["api-key"]["data"] == {"source": "COMET_API_KEY"}
    assert isinstance(by_name["server"]["data"]["rtt_ms"], float)
    assert abs(by_name["clock"]["data"]["skew_s"]) <= 2


def test_offline_skips_the_server(offline_env: dict[str, str], tmp_path: Path) -> None:
    """No API key: server, auth and clock are skipped with a note, and that is no failure."""
    env = {**offline_env, "COMET_AGENT_STATE_DIRECTORY": str(tmp_path / "state")}
    code, text, lines = _doctor(env, tmp_path)
    assert code == 0, text
    assert lines["api-key"].startswith("SKIP no API key: the agent records offline archives in ")
    for name in ("server", "auth", "clock"):
        assert lines[name] == "SKIP skipped: no API key (offline mode)"


def test_outbox_is_read_without_touching_leases(
    server: CometStandIn, doctor_env: dict[str, str], tmp_path: Path
) -> None:
    """Backlog and dead letters are counted; a running agent's leased row stays leased."""
    state = tmp_path / "state"
    outbox = Outbox(state / "outbox.sqlite3")  # stands for the running agent: it stays open
    try:
        ids = outbox.put_many(
            [
                Message("log-other", KEY, {"key": f"k{i}", "value": i}, 1_000 + i, Kind.FACT)
                for i in range(4)
            ]
        )
        outbox.reject([ids[0]], "HTTP 400: bad field")
        leased = outbox.lease(1)
        code, text, lines = _doctor(doctor_env, tmp_path)
        conn = sqlite3.connect(f"file:{state / 'outbox.sqlite3'}?mode=ro", uri=True)
        states = dict(conn.execute("SELECT id, state FROM messages").fetchall())
        conn.close()
    finally:
        outbox.close()
    assert code == 0, text
    assert lines["outbox"].startswith(
        "WARN 3 waiting, 1 dead letters: Comet refused 1 message(s) for good; fix: see why: "
    )
    assert states[leased[0].id] == 1  # still leased: doctor released nothing


def test_gpu_line_from_nvml() -> None:
    """With NVML (the fake, three GPUs): driver, CUDA and NVML versions and the count."""
    found = gpu_check(Settings(), fake_nvml.three_gpus(), {})
    assert found.status == OK
    assert found.detail == "NVML 12.550.54.15, driver 550.54.15, CUDA 12.4, 3 GPU(s)"
    missing = gpu_check(Settings(), fake_nvml.library_missing(), {})
    assert missing.status == SKIP
    assert "libnvidia-ml.so.1 not found" in missing.detail


def test_beside_a_running_agent(
    server: CometStandIn, doctor_env: dict[str, str], tmp_path: Path
) -> None:
    """With `start` running: doctor names its pid, reads its outbox, and the agent goes on."""
    server.answer_keepalive({"isAliveBeatDurationMillis": 1000, "cpuMonitorIntervalMillis": 1000})
    agent = AgentProcess(["start"], doctor_env, cwd=tmp_path)
    agent.wait_for("agent.ready")
    wait_until(lambda: (tmp_path / "state" / "status.json").exists(), timeout_s=30)
    code, text, lines = _doctor(doctor_env, tmp_path)
    before = server.count("add-cpu-metrics")
    wait_until(lambda: server.count("add-cpu-metrics") >= before + 2, timeout_s=30)
    assert agent.stop() == 0
    assert code == 0, text
    assert lines["agent"] == f"OK pid {agent.pid} is running and delivering"
    assert lines["outbox"].startswith("OK ")
    assert lines["state-dir"].startswith(f"OK {tmp_path / 'state'}: 0700, yours, writable, ")


def test_usage_and_config_errors_exit_2(doctor_env: dict[str, str], tmp_path: Path) -> None:
    """A bad flag or a bad setting is a usage error: exit 2, one line, no checks run."""
    flag = run_agent(["doctor", "--verbose"], doctor_env, cwd=tmp_path)
    assert flag.returncode == 2
    assert flag.stderr.startswith("comet-agent: unrecognized arguments: --verbose")
    setting = run_agent(["doctor"], {**doctor_env, "COMET_AGENT_STOP_TIMEOUT_S": "-1"})
    assert setting.returncode == 2
    assert setting.stderr.startswith("comet-agent: [agent] stop_timeout_s must be between 0 and")
    assert setting.stdout == ""


def test_tls_settings(tmp_path: Path) -> None:
    """Checks off or plain http to a remote host: warnings; a CA bundle that is no PEM: fail."""
    remote = "https://comet.example.com/clientlib/"
    assert tls_check(Settings(url_override=remote)).status == OK
    off = tls_check(Settings(url_override=remote, verify_tls=False))
    assert (off.status, off.fix) == (
        WARN,
        "turn verify_tls back on; for a proxy that re-signs traffic set [http] ca_bundle",
    )
    plain = tls_check(Settings(url_override="http://comet.example.com/clientlib/"))
    assert plain.status == WARN
    assert plain.detail.endswith("is plain http: the API key travels unencrypted")
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    bad = tls_check(Settings(url_override=remote, ca_bundle=bundle))
    assert (bad.status, bad.detail) == (FAIL, f"the CA bundle {bundle} holds no PEM certificate")
    missing = tls_check(Settings(url_override=remote, ca_bundle=tmp_path / "none.pem"))
    assert missing.status == FAIL
    assert "cannot be read (No such file or directory)" in missing.detail


def test_a_damaged_outbox_fails_with_what_the_next_start_does(
    doctor_env: dict[str, str], tmp_path: Path
) -> None:
    """Overwritten pages are found (integrity check) and the fix says what start will do."""
    import random

    path = tmp_path / "state" / "outbox.sqlite3"
    with Outbox(path) as box:
        box.put_many(
            [
                Message("log-other", KEY, {"key": "k" * 600, "value": i}, 1_000 + i)
                for i in range(300)
            ]
        )
    with path.open("r+b") as f:
        f.seek(30 * 4096)
        f.write(random.Random(7).randbytes(3 * 4096))
    code, text, lines = _doctor(doctor_env, tmp_path)
    assert code != 0
    assert lines["outbox"].startswith(f"FAIL {path} cannot be read (damaged: "), text
    assert "keeps what still reads and moves the damaged file aside" in text


def test_a_server_answering_500_fails(
    server: CometStandIn, doctor_env: dict[str, str], tmp_path: Path
) -> None:
    """Reachable but broken (HTTP 500 everywhere): the server check fails, exit 1."""
    server.outage(status=500)
    code, text, lines = _doctor(doctor_env, tmp_path)
    assert code == 1, text
    assert lines["server"].startswith(f"FAIL {server.url} answered HTTP 500")
    assert "the server at" in lines["server"] and "is failing (HTTP 500)" in lines["server"]
