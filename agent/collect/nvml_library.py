"""Whether NVML's library loads, asked before pynvml is imported.

pynvml's module costs ~3 MB of memory for the life of the daemon, which a host
without an NVIDIA driver (the offline default, most CI and CPU-only nodes)
never needs. The library name is pynvml's own on Linux (nvidia-ml-py,
``_LoadNvmlLibrary``: ``CDLL("libnvidia-ml.so.1")``), so this says no exactly
when ``nvmlInit`` would raise NVMLError_LibraryNotFound; elsewhere pynvml
looks where it looks, and is asked.
"""

from __future__ import annotations

import ctypes
import sys

LIBRARY = "libnvidia-ml.so.1"
NOT_FOUND = (
    f"NVML library {LIBRARY} not found; install the NVIDIA driver to sample GPUs; "
    "GPU sampling is off"
)


def missing_library() -> str | None:
    """Return why GPU sampling is off when libnvidia-ml cannot load; None when it can."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        ctypes.CDLL(LIBRARY)  # loaded once: pynvml's own CDLL then finds it already mapped
    except OSError:
        return NOT_FOUND
    return None
