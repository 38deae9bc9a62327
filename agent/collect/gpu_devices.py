"""Which GPUs the agent reports, in which order: NVML's devices filtered by CUDA_VISIBLE_DEVICES.

``CUDA_VISIBLE_DEVICES`` may name NVML indices, whole or unique-prefix
``GPU-`` UUIDs, and ``MIG-`` UUIDs. As in CUDA, an entry that names nothing
ends the list, and ``""`` or ``-1`` means no GPU. A reported GPU's position
is the ``<i>`` of ``sys.gpu.<i>``; a MIG instance keeps its index ``j`` on
its GPU, as NVML enumerates them. Indices are NVML's (nvidia-smi's, PCI bus
order), as the SDK reads them, whatever ``CUDA_DEVICE_ORDER`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.collect.gpu_types import Handle
from agent.collect.nvml import Nvml, NvmlStuck
from agent.errors import CollectorError

_NO_DEVICES = ("", "-1")


@dataclass(frozen=True)
class GpuIdentity:
    """What CUDA_VISIBLE_DEVICES can name: a GPU's NVML index and UUID, and its MIG instances."""

    nvml_index: int
    uuid: str
    migs: tuple[tuple[int, str], ...] = ()  # (index on the GPU, "MIG-…" UUID)


def select_devices(
    visible: str | None, gpus: Sequence[GpuIdentity]
) -> tuple[list[tuple[int, tuple[int, ...] | None]], str | None]:
    """Apply CUDA_VISIBLE_DEVICES to the GPUs NVML sees.

    Returns the chosen GPUs in report order as (NVML index, MIG indices or
    None for all), and a one-line note when an entry named nothing.
    """
    if visible is None:
        return [(g.nvml_index, None) for g in gpus], None
    if visible.strip() in _NO_DEVICES:
        return [], None
    chosen: dict[int, list[int] | None] = {}  # insertion order is report order
    note = None
    for raw in visible.split(","):
        found = _match(raw.strip(), gpus)
        if isinstance(found, str):
            note = f"CUDA_VISIBLE_DEVICES: {found}; it and later entries are ignored, as CUDA does"
            break
        index, mig = found
        if mig is None:
            chosen[index] = None
        else:
            migs = chosen.setdefault(index, [])
            if migs is not None and mig not in migs:
                migs.append(mig)
    return [(i, None if m is None else tuple(m)) for i, m in chosen.items()], note


def _match(token: str, gpus: Sequence[GpuIdentity]) -> tuple[int, int | None] | str:
    if token.isdigit():
        index = int(token)
        if any(g.nvml_index == index for g in gpus):
            return index, None
        return f"entry {token!r} is not a GPU index (NVML sees {len(gpus)})"
    if token.startswith("GPU-"):
        hits: list[tuple[int, int | None]] = [
            (g.nvml_index, None) for g in gpus if g.uuid.startswith(token)
        ]
    elif token.startswith("MIG-"):
        hits = [(g.nvml_index, j) for g in gpus for j, uuid in g.migs if uuid.startswith(token)]
    else:
        return f"entry {token!r} is neither an index nor a GPU-/MIG- UUID"
    if len(hits) == 1:
        return hits[0]
    return f"entry {token!r} matches {'no' if not hits else 'more than one'} device"


@dataclass(frozen=True)
class Device:
    """A device the agent reports: a whole GPU or one MIG instance."""

    key: str  # the metric name part after "sys.": "gpu.0", "gpu.0.mig.1"
    label: str  # how messages name it: "GPU 0", "GPU 1 (nvidia-smi 3)", "GPU 0 MIG 1"
    position: int
    uuid: str
    handle: Handle = field(compare=False, repr=False)


@dataclass(frozen=True)
class ReportedGpu:
    """A reported GPU and the MIG instances reported with it."""

    device: Device
    nvml_index: int
    migs: tuple[Device, ...] = ()


def discover(nvml: Nvml, visible: str | None) -> tuple[list[ReportedGpu], list[str]]:
    """List the GPUs (and MIG instances) to report, and notes on what was skipped."""
    notes: list[str] = []
    identities: list[GpuIdentity] = []
    handles: dict[int, tuple[Handle, dict[int, Handle]]] = {}
    for n in range(nvml.count()):
        where = f"NVML GPU {n}"
        try:
            handle = nvml.handle(n)
            uuid = nvml.uuid(handle, where)
            migs: dict[int, Handle] = {}
            mig_uuids: list[tuple[int, str]] = []
            if nvml.mig_enabled(handle, where):
                for j, mig_handle in nvml.mig_devices(handle, where):
                    migs[j] = mig_handle
                    mig_uuids.append((j, nvml.uuid(mig_handle, f"{where} MIG {j}")))
        except NvmlStuck:
            raise
        except CollectorError as exc:
            notes.append(f"skipped {where}: {exc}")
            continue
        identities.append(GpuIdentity(n, uuid, tuple(mig_uuids)))
        handles[n] = (handle, migs)
    chosen, note = select_devices(visible, identities)
    if note:
        notes.append(note)
    by_index = {g.nvml_index: g for g in identities}
    reported = []
    for i, (n, only) in enumerate(chosen):
        handle, migs = handles[n]
        label = f"GPU {i}" if i == n else f"GPU {i} (nvidia-smi {n})"
        whole = Device(f"gpu.{i}", label, i, by_index[n].uuid, handle)
        mig_uuid = dict(by_index[n].migs)
        parts = tuple(
            Device(f"gpu.{i}.mig.{j}", f"{label} MIG {j}", i, mig_uuid[j], migs[j])
            for j in sorted(migs)
            if only is None or j in only
        )
        reported.append(ReportedGpu(whole, n, parts))
    return reported, notes
