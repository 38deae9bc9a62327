"""``comet-agent sysinfo`` and ``comet-agent sample``: see what would be sent, send nothing."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading

from agent import human, log
from agent.collect.base import Roots, Sample
from agent.config import Settings
from agent.lifecycle.facts import gather
from agent.lifecycle.samples import typed_bodies
from agent.lifecycle.sampling import Sampling
from agent.message import now_ms

SAMPLE_WAIT_S = 1.0  # utilisation and rates are measured over this much time


def sysinfo(args: argparse.Namespace, settings: Settings) -> int:
    """Print the static facts: Set System Details, git metadata, GPU static info."""
    from agent.collect.gpu import read_gpu_facts

    gpu_reason: list[str] = []
    gpu = read_gpu_facts(settings, on_unavailable=gpu_reason.append)
    facts = gather(
        settings,
        command=sys.argv,
        pid=os.getpid(),
        roots=Roots.host(settings.host_root),
        gpu_static_info=gpu.static_info if gpu else None,
        gpu_additional=gpu.additional if gpu else (),
    )
    data: dict[str, object] = {
        "system_details": facts.system_details,
        "git_metadata": facts.git_metadata,
        "git_patch_bytes": len(facts.git_patch_zip) if facts.git_patch_zip else None,
        "cloud_details": facts.cloud_details,
        "notes": [*facts.notes, *gpu_reason],
    }
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    details = dict(facts.system_details)
    extra = details.pop("logAdditionalSystemInfoList", [])
    gpus = details.pop("gpuStaticInfoList", [])
    packages = details.pop("installedPackages", [])
    os_packages = details.pop("osPackages", [])
    lines = ["Set System Details:"]
    lines += [f"  {k:<22} {_text(v)}" for k, v in details.items()]
    lines.append(f"  {'installedPackages':<22} {len(packages)} packages")  # type: ignore[arg-type]
    lines.append(f"  {'osPackages':<22} {len(os_packages)} packages")  # type: ignore[arg-type]
    lines.append("Additional system info:")
    items = [i for i in extra if isinstance(i, dict)] if isinstance(extra, list) else []
    rows = [human.info(str(item.get("key")), item.get("value")) for item in items]
    lines += [f"  {label:<28} {value}" for label, value in rows]
    lines.append("GPUs:" if gpus else f"GPUs: none ({'; '.join(gpu_reason) or 'none seen'})")
    for g in gpus if isinstance(gpus, list) else []:
        if not isinstance(g, dict):
            continue
        shown = ", ".join(f"{k} {human.field(k, v)}" for k, v in g.items())
        lines.append(f"  {shown}")
    lines.append("Git:" if facts.git_metadata else "Git: not a repository, or git is off")
    if facts.git_metadata:
        lines += [f"  {k:<8} {_text(v)}" for k, v in facts.git_metadata.items()]
        patch = data["git_patch_bytes"]
        lines.append(f"  patch    {f'{patch} bytes (zipped)' if patch else 'none (clean tree)'}")
    lines += [f"note: {note}" for note in data["notes"]]  # type: ignore[attr-defined]
    print("\n".join(lines))
    return 0


def sample(args: argparse.Namespace, settings: Settings) -> int:
    """Take one sample of every metric (after priming) and print it."""
    # The daemon's samplers, read the daemon's way; what failed is printed here, not logged.
    sampling = Sampling(settings, Roots.host(settings.host_root), log.RateLimiter(), one_shot=True)
    sampling.gpu(None)  # the node's GPUs, no process tree watched (build() keeps this one)
    sampling.build(None if settings.host_root else os.getpid())  # the node, or this process
    groups = ("cpu", "gpu")
    try:
        for group in groups:  # rates need a first reading to measure from
            sampling.take(group)
        threading.Event().wait(SAMPLE_WAIT_S)
        readings = [got for group in groups for got in sampling.take(group)]
    finally:
        sampling.close()
    taken = {name: got for name, got in readings if isinstance(got, Sample)}
    failures = {name: str(got) for name, got in readings if not isinstance(got, Sample)}
    gpu_reason = [sampling.gpu_note] if sampling.gpu_note else []
    if args.json:
        print(
            json.dumps(
                {
                    "timestamp_ms": now_ms(),
                    "samples": {
                        name: {
                            "timestamp_ms": s.timestamp_ms,
                            "metrics": dict(s.metrics),
                            "typed": typed_bodies(s),
                            "unsupported": sorted(s.unsupported),
                            "events": [e.message for e in s.events],
                        }
                        for name, s in taken.items()
                    },
                    "failures": failures,
                    "gpu": gpu_reason[0] if gpu_reason else "on",
                },
                indent=2,
            )
        )
        return 0
    for name, s in taken.items():
        print(f"{name} (at {human.stamp(s.timestamp_ms)}):")
        for metric, value in s.metrics.items():
            print(f"  {metric:<40} {human.metric(metric, value)}")
        for endpoint, body in typed_bodies(s).items():
            shown = ", ".join(
                f"{k} {human.field(k, v)}" for k, v in body.items() if k != "timestamp"
            )
            print(f"  {endpoint:<40} {shown}")
        if s.unsupported:
            print(f"  not supported here: {', '.join(sorted(s.unsupported))}")
        for event in s.events:
            print(f"  event: {event.message}")
    for name, error in failures.items():
        print(f"{name}: {error}")
    if gpu_reason:
        print(f"gpu: {gpu_reason[0]}")
    return 0


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
