"""Regenerate the golden file: ``python -m tests.golden --update`` (else: show the difference)."""

from __future__ import annotations

import argparse
import difflib
import sys

from tests.golden.run import EXPECTED, sample_json


def main() -> int:
    """Compare (or with --update, rewrite) tests/golden/sample.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the expected file")
    got = sample_json()
    if parser.parse_args().update:
        EXPECTED.write_text(got)
        print(f"wrote {EXPECTED}")
        return 0
    want = EXPECTED.read_text()
    sys.stdout.writelines(difflib.unified_diff(want.splitlines(True), got.splitlines(True)))
    return 0 if got == want else 1


if __name__ == "__main__":
    sys.exit(main())
