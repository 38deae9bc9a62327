"""The golden run's NVML: nvidia-ml-py's real module, its calls answered by tests/fakes/nvml.py.

Put first on PYTHONPATH (with the repository root) by tests/golden/run.py. The real
module is loaded from the next pynvml.py on sys.path, so every exception class and
constant is NVML's own; only the nvml* functions come from the fake's three_gpus().
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _real_path() -> Path:
    for entry in sys.path:
        found = Path(entry or ".").resolve() / "pynvml.py"
        if found.parent != _HERE and found.is_file():
            return found
    raise ImportError("nvidia-ml-py's pynvml.py is not on sys.path")


_spec = importlib.util.spec_from_file_location("pynvml", _real_path())
assert _spec is not None and _spec.loader is not None
_real = importlib.util.module_from_spec(_spec)
sys.modules["pynvml"] = _real
_spec.loader.exec_module(_real)

from tests.fakes.nvml import three_gpus  # noqa: E402 - needs the real module registered first

_fake = three_gpus()
_fake.now_us = 1_700_000_000_000_000  # PCIe counters: a fixed clock, so the rates are too
for _name in dir(_fake):
    if _name.startswith("nvml"):
        setattr(_real, _name, getattr(_fake, _name))
