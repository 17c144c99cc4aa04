"""`just bench`: run every benchmark (or those named) and print a results table."""

from __future__ import annotations

import importlib
import sys

# name -> module with a `main()` that prints its results table
BENCHMARKS: dict[str, str] = {
    "scheduler_failover": "bench.scheduler_failover",
}


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default)."""
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmarks: {unknown}; known: {list(BENCHMARKS)}")  # noqa: T201 - report
        return 2
    for name in names:
        print(f"## {name}")  # noqa: T201 - report
        importlib.import_module(BENCHMARKS[name]).main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
