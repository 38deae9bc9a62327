"""One doctor check's verdict, and how verdicts are shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass(frozen=True)
class Check:
    """One check's verdict: a line for a human, the fix when it is not ok."""

    name: str
    status: str  # ok, warn, fail or skip
    detail: str
    fix: str | None = None
    data: Mapping[str, object] = field(default_factory=dict)


def render(checks: list[Check]) -> str:
    """One line per check, the fix on the same line; a count at the end."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        fix = f"; fix: {c.fix}" if c.fix and c.status in (FAIL, WARN) else ""
        lines.append(f"{c.status.upper():<4}  {c.name:<{width}}  {c.detail}{fix}")
    counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL, SKIP)}
    warnings = f"{counts[WARN]} warning{'' if counts[WARN] == 1 else 's'}"
    lines.append(f"{counts[OK]} ok, {warnings}, {counts[FAIL]} failed, {counts[SKIP]} skipped")
    return "\n".join(lines)
