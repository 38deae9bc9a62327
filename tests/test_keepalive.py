"""The interval policy: the server's intervals applied, clamped, or ignored with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_settings
from agent.lifecycle.keepalive import INITIAL_BEAT_S, IntervalPolicy
from tests.fakes.comet_server import CometStandIn
from tests.helpers import CANARY_KEY, TEST_KEYS, wait_until


def _policy(tmp_path: Path, env: dict[str, str] | None = None) -> IntervalPolicy:
    settings = load_settings(
        environ=env or {}, home=tmp_path, cwd=tmp_path, system_config=tmp_path / "none.toml"
    )
    return IntervalPolicy(settings)


def test_before_any_answer_the_configured_intervals_apply(tmp_path: Path) -> None:
    """Until the first answer: a 10 s beat (the SDK's) and the 30 s sampling defaults."""
    current = _policy(tmp_path).current
    assert (current.beat_s, current.cpu_s, current.gpu_s) == (INITIAL_BEAT_S, 30.0, 30.0)
    assert (current.cpu_source, current.gpu_source) == ("default", "default")


def test_seed_answer_is_applied(tmp_path: Path) -> None:
    """The seed's example answer (camelCase) sets all three intervals."""
    policy = _policy(tmp_path)
    change = policy.apply(
        {
            "isAliveBeatDurationMillis": 10000,
            "gpuMonitorIntervalMillis": 60000,
            "cpuMonitorIntervalMillis": 68000,
        }
    )
    assert (policy.current.beat_s, policy.current.cpu_s, policy.current.gpu_s) == (10, 68, 60)
    assert policy.current.cpu_source == "server"
    assert change.ignored == () and change.clamped == ()


def test_live_heartbeat_answer_is_applied(tmp_path: Path) -> None:
    """The clientlib heartbeat's snake_case answer works the same way."""
    policy = _policy(tmp_path)
    policy.apply(
        {
            "is_alive_beat_duration_millis": 5000,
            "cpu_monitor_interval_millis": 15000,
            "gpu_monitor_interval_millis": 20000,
        }
    )
    assert (policy.current.beat_s, policy.current.cpu_s, policy.current.gpu_s) == (5, 15, 20)


@pytest.mark.parametrize(
    ("value", "expected_cpu", "kind"),
    [
        (0, 30.0, "ignored"),
        (-1000, 30.0, "ignored"),
        ("15000", 30.0, "ignored"),
        (True, 30.0, "ignored"),
        (float("nan"), 30.0, "ignored"),
        (None, 30.0, "ignored"),
        (50, 1.0, "clamped"),
        (86_400_000, 600.0, "clamped"),
        (2500.0, 2.5, None),
    ],
)
def test_garbage_is_ignored_and_extremes_clamped(
    tmp_path: Path, value: object, expected_cpu: float, kind: str | None
) -> None:
    """Non-positive, non-numeric values keep the previous interval; extremes go to the bounds."""
    policy = _policy(tmp_path)
    change = policy.apply({"cpuMonitorIntervalMillis": value})
    assert policy.current.cpu_s == expected_cpu
    assert bool(change.ignored) is (kind == "ignored")
    assert bool(change.clamped) is (kind == "clamped")


def test_missing_field_keeps_the_last_good_value(tmp_path: Path) -> None:
    """An answer without a field (or no answer at all) leaves that interval as it was."""
    policy = _policy(tmp_path)
    policy.apply({"cpuMonitorIntervalMillis": 12000})
    policy.apply({"isAliveBeatDurationMillis": 3000})
    policy.apply("<html>garbage</html>")
    assert (policy.current.beat_s, policy.current.cpu_s) == (3.0, 12.0)


def test_user_setting_wins_over_the_server(tmp_path: Path) -> None:
    """An explicit COMET_SYSTEM_CPU_INTERVAL is a documented override of the server's value."""
    policy = _policy(tmp_path, {"COMET_SYSTEM_CPU_INTERVAL": "45"})
    policy.apply({"cpuMonitorIntervalMillis": 5000, "gpuMonitorIntervalMillis": 5000})
    assert (policy.current.cpu_s, policy.current.cpu_source) == (45.0, "config")
    assert (policy.current.gpu_s, policy.current.gpu_source) == (5.0, "server")


def test_follow_server_off(tmp_path: Path) -> None:
    """[sampling] follow_server = false keeps the configured sampling intervals, beats follow."""
    policy = _policy(tmp_path, {"COMET_AGENT_FOLLOW_SERVER": "false"})
    policy.apply({"isAliveBeatDurationMillis": 2000, "cpuMonitorIntervalMillis": 5000})
    assert (policy.current.beat_s, policy.current.cpu_s) == (2.0, 30.0)


def test_custom_bounds(tmp_path: Path) -> None:
    """The clamp bounds are settings ([sampling] min_interval_s, max_interval_s)."""
    policy = _policy(
        tmp_path, {"COMET_AGENT_MIN_INTERVAL_S": "5", "COMET_AGENT_MAX_INTERVAL_S": "20"}
    )
    policy.apply({"isAliveBeatDurationMillis": 1000, "cpuMonitorIntervalMillis": 60000})
    assert (policy.current.beat_s, policy.current.cpu_s) == (5.0, 20.0)


def test_a_restart_resumes_with_the_intervals_the_server_set(tmp_path: Path) -> None:
    """The server's intervals are kept in the outbox; a new process starts with them."""
    import threading

    from agent.delivery.outbox import Outbox
    from agent.lifecycle.heartbeat import Heartbeat
    from agent.log import RateLimiter
    from agent.schedule import Scheduler

    answer = {
        "isAliveBeatDurationMillis": 2000,
        "cpuMonitorIntervalMillis": 1000,
        "gpuMonitorIntervalMillis": 3000,
    }
    key = "0123456789abcdef0123456789abcdef"

    def heartbeat(box: Outbox) -> Heartbeat:
        beat = Heartbeat(_policy(tmp_path), Scheduler(), RateLimiter(), threading.Event())
        beat.key = key
        beat.bind(box, None)
        return beat

    with Outbox(tmp_path / "outbox.db") as box:
        assert heartbeat(box).apply(answer)
    with Outbox(tmp_path / "outbox.db") as box:
        current = heartbeat(box).policy.current
    assert (current.beat_s, current.cpu_s, current.gpu_s) == (2.0, 1.0, 3.0)
    assert current.cpu_source == "server"
    with Outbox(tmp_path / "outbox.db") as box:  # another experiment: the defaults
        other = Heartbeat(_policy(tmp_path), Scheduler(), RateLimiter(), threading.Event())
        other.key = "f" * 32
        other.bind(box, None)
    assert other.policy.current.cpu_s == 30.0
    # The user's own interval still wins over the server's remembered one.
    user = Heartbeat(
        _policy(tmp_path, {"COMET_SYSTEM_CPU_INTERVAL": "7"}),
        Scheduler(),
        RateLimiter(),
        threading.Event(),
    )
    user.key = key
    with Outbox(tmp_path / "outbox.db") as box:
        user.bind(box, None)
    assert (user.policy.current.cpu_s, user.policy.current.beat_s) == (7.0, 2.0)


def test_stopping_releases_a_beat_in_flight_and_sends_no_more(
    tmp_path: Path, server: CometStandIn
) -> None:
    """A slow keep-alive: stop releases the job at once; a beat queued behind it is never sent."""
    import threading
    import time

    from agent.api.client import CometClient
    from agent.lifecycle.heartbeat import Heartbeat
    from agent.log import RateLimiter
    from agent.schedule import Scheduler

    stopping = threading.Event()
    beat = Heartbeat(_policy(tmp_path), Scheduler(), RateLimiter(), stopping)
    beat.key = TEST_KEYS[0]
    server.fail("keep-alive", mode="slow", delay_s=2.0)
    with CometClient(api_key=CANARY_KEY, url_override=server.url, timeout_s=10) as client:
        beat.client = client
        threading.Timer(0.5, stopping.set).start()
        started = time.monotonic()
        assert beat.beat() is False
        assert beat.beat() is False  # after the stop: given up before it started
        assert time.monotonic() - started < 1.8  # released before the slow answer came
        wait_until(lambda: server.count("keep-alive", ok_only=False) >= 1, timeout_s=10)
        time.sleep(1.0)  # room for a second request, were it sent
    assert server.count("keep-alive", ok_only=False) == 1
    assert beat.last == {}  # an abandoned beat records nothing
