"""A typical monitored run as the messages the daemon would send, and archives made of it."""

from __future__ import annotations

import io
import itertools
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.api import bodies
from agent.delivery.sinks.offline import OfflineSink

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000_000
Msg = tuple[str, dict[str, object], bytes | None]


def patch_zip(text: str = "diff --git a/x b/x\n+hello\n") -> bytes:
    """A git patch the way wire §3.5 ships it: a zip holding git_diff.patch."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        # A fixed date: two calls give the same bytes, whatever second they run in.
        zf.writestr(zipfile.ZipInfo("git_diff.patch", (2024, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


def system_details_body() -> dict[str, object]:
    """An all-in-one Set System Details body, without ip (unknown on this host)."""
    return bodies.system_details(
        command=["python", "train.py"],
        env=None,
        executable="/usr/bin/python3",
        hostname="gpu-node-01",
        machine="x86_64",
        os="Linux-6.1.0-x86_64-with-glibc2.36",
        os_release="6.1.0",
        os_type="Linux",
        pid=4242,
        processor="",
        python_version="3.11.7",
        python_version_verbose="3.11.7 (main) [GCC 12.2.0]",
        user="alice",
    )


def typical_messages(samples: int = 3) -> list[Msg]:
    """Static facts, `samples` CPU/GPU samples, output, and the end of the run."""
    msgs: list[Msg] = [
        ("set-start-end-time", bodies.start_end_time(T0, None), None),
        ("set-file-path", {"filePath": "/home/alice/train.py"}, None),
        ("set-system-details", system_details_body(), None),
        ("set-system-details", bodies.system_details(installed_packages=["psutil==7.2.2"]), None),
        ("set-system-details", bodies.system_details(os_packages=["libc6=2.36-9"]), None),
        (
            "set-system-details",
            bodies.system_details(
                gpu_static_info=[
                    {
                        "gpu_index": 0,
                        "name": "NVIDIA H200",
                        "uuid": "GPU-0",
                        "total_memory": 150_754_820_096,
                        "power_limit": 700_000,
                    }
                ],
                additional=[{"key": "cgroup_cpu_quota", "value": 2.5}],
                network_interface_ips=["127.0.0.1"],
            ),
            None,
        ),
        (
            "set-git-metadata",
            bodies.git_metadata(
                user="Alice",
                root="a" * 40,
                branch="refs/heads/main",
                parent="b" * 40,
                origin="https://example.com/acme/agent.git",
            ),
            None,
        ),
        ("upload-git-patch", {}, patch_zip()),
        ("set-cloud-details", {"provider": "AWS", "metadata": {"instanceType": "p5"}}, None),
        ("log-other", bodies.log_other("agent_version", "0.1.0", T0 + 5), None),
    ]
    offset = itertools.count()
    for i in range(samples):
        at = T0 + 1_000 * (i + 1)
        items = [
            bodies.metric_item("sys.cpu.percent.avg", 12.5 + i, at),
            bodies.metric_item("sys.ram.used", 4_294_967_296 + i, at),
            bodies.metric_item("sys.load.avg", 1.25, at, context="node-1"),
            bodies.metric_item("sys.gpu.0.gpu_utilization", 37 + i, at, step=i),
        ]
        msgs.append(("log-metric-batch", bodies.metric_batch(items), None))
        msgs.append(("add-cpu-metrics", bodies.cpu_metrics([10.0, 15.0 + i], at), None))
        msgs.append(("add-ram-metrics", bodies.ram_metrics(8 << 30, (4 << 30) + i, at), None))
        msgs.append(("add-load-metrics", bodies.load_metrics(1.25, at), None))
        lines = [
            bodies.output_line(
                f"epoch {i} <b>", stderr=False, offset=next(offset), timestamp_ms=at
            ),
            bodies.output_line("warn\n", stderr=True, offset=next(offset), timestamp_ms=at),
        ]
        msgs.append(("log-output", bodies.output(lines), None))
    end = T0 + 1_000 * (samples + 1)
    msgs.append(("set-start-end-time", bodies.start_end_time(None, end), None))
    msgs.append(("mark-not-throttled", {}, None))
    return msgs


def ticking(start: int = T0) -> Callable[[], int]:
    """A clock that advances 1 ms per reading."""
    counter: Iterator[int] = itertools.count(start)
    return lambda: next(counter)


def write_archive(
    directory: Path, messages: list[Msg], key: str = KEY, **options: object
) -> OfflineSink:
    """Send `messages` through an OfflineSink and close it; return the sink."""
    sink = OfflineSink(
        directory,
        key,
        workspace="ws",
        project="proj",
        start_ms=T0,
        clock=ticking(),
        **options,  # type: ignore[arg-type]
    )
    for endpoint, body, attachment in messages:
        sink.send(endpoint, key, body, attachment)
    sink.close()
    return sink
