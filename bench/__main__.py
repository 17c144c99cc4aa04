"""`just bench`: run every benchmark (or those named) and print their results."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from bench import market_data

BENCHMARKS: dict[str, Callable[[list[str]], Any]] = {"market_data": market_data.main}


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default)."""
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmarks: {unknown}; known: {list(BENCHMARKS)}")  # noqa: T201
        return 2
    for name in names:
        BENCHMARKS[name]([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
