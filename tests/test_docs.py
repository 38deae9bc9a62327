"""The documents name only files the repository has, and cite the project's own wire notes."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from agent.api.endpoints import ENDPOINTS
from tests.helpers import ROOT

DOCS = [
    "README.md",
    "ARCHITECTURE.md",
    "docs/comet-wire.md",
    "systemd/README.md",
    "bench/README.md",
]
# A relative path in a document: a link target, or a backticked name with a folder in it.
_LINK = re.compile(r"\]\(([^)#\s]+)")
_CODE = re.compile(r"`((?:agent|tests|bench|deploy|systemd|docs|\.ci)/[\w./@-]+)`")


def _tracked() -> list[str]:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    out = subprocess.run(
        [git, "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    if not out:
        pytest.skip("not a git checkout")
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_document_names_exists(doc: str) -> None:
    """README, ARCHITECTURE and the wire notes name no file the repository lacks."""
    path = ROOT / doc
    text = path.read_text()
    missing = []
    for found in [*_LINK.findall(text), *_CODE.findall(text)]:
        if found.startswith(("http://", "https://", "mailto:")):
            continue
        target = (path.parent / found) if found.startswith(".") else (ROOT / found)
        if not target.exists() and not (path.parent / found).exists():
            missing.append(found)
    assert missing == []


def test_no_file_outside_docs_cites_the_spec_users_do_not_have() -> None:
    """Users have docs/comet-wire.md, not the specification the project was built from."""
    spec = "SPEC" + ".md"  # spelled apart, so this file does not cite it
    citing = [
        f
        for f in _tracked()
        if not f.startswith("docs/")
        and (ROOT / f).is_file()
        and f.endswith((".py", ".md", ".toml", ".txt", ".sh", ".yaml", ".yml"))
        and spec in (ROOT / f).read_text(errors="replace")
    ]
    assert citing == [], citing


def test_the_wire_notes_list_every_endpoint_the_client_knows() -> None:
    """Each row of agent/api/endpoints.py is in the wire notes' table (§2)."""
    notes = (ROOT / "docs" / "comet-wire.md").read_text()
    assert [name for name in ENDPOINTS if f"| `{name}` |" not in notes] == []
