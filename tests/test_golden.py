"""node_exporter-style: the fixture host through `comet-agent sample --json`, against a file.

A change to what the agent reads or how it names and scales it shows here as a diff of
tests/golden/sample.json. When the change is meant: `python -m tests.golden --update`,
and review the diff in the commit.
"""

from __future__ import annotations

from pathlib import Path

from tests.golden.run import EXPECTED, sample_json


def test_the_fixture_host_samples_as_recorded(tmp_path: Path) -> None:
    """Every metric, unit, unsupported field and failure of the fixture host, as recorded."""
    assert sample_json(tmp_path) == EXPECTED.read_text()
