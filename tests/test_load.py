"""load.py: the 1-minute load average from /proc/loadavg."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.collect.base import Roots, Sample
from agent.collect.load import LoadSampler, parse_loadavg
from agent.collect.readings import LoadAverage
from agent.errors import CollectorError, NoData
from agent.lifecycle.samples import typed_bodies

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_800_000_000_000


def test_parse_loadavg() -> None:
    """The first field, not divided by the CPU count."""
    assert parse_loadavg("3.42 2.10 1.05 4/812 91234\n") == 3.42
    assert parse_loadavg("0.00 0.00 0.00 1/1 1") == 0.0


@pytest.mark.parametrize("text", ["", "\n", "high 1.0 2.0", "nan-ish"])
def test_parse_loadavg_malformed(text: str) -> None:
    """Empty or garbage content is an error naming the file."""
    with pytest.raises(CollectorError, match="/proc/loadavg: unexpected content"):
        parse_loadavg(text)


@pytest.mark.parametrize(("tree", "load"), [("host-plain", 1.25), ("cgroup2-limited", 3.42)])
def test_sampler_both_channels(tree: str, load: float) -> None:
    """sys.load.avg and the Add Processor Load Metrics body, one timestamp."""
    sampler = LoadSampler(roots=Roots.under(FIXTURES / tree), clock=lambda: T0)
    sample = sampler.collect()
    assert sample == Sample(T0, {"sys.load.avg": load}, (LoadAverage(load),))
    assert typed_bodies(sample) == {"add-load-metrics": {"loadAverage": load, "timestamp": T0}}


def test_missing_file_is_nodata(tmp_path: Path) -> None:
    """Where there is no /proc/loadavg, the sample is skipped quietly."""
    with pytest.raises(NoData):
        LoadSampler(roots=Roots.under(tmp_path)).collect()
