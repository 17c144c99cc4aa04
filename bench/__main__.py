"""`just bench`: run every benchmark (or those named) and print a results table."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default)."""
    names = argv or []
    print(f"no benchmarks registered yet (asked for: {names or 'all'})")  # noqa: T201 - report  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
