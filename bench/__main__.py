"""`just bench [name ...]`: run benchmarks (all by default) and print a Markdown table each."""

from __future__ import annotations

import importlib
import sys
from datetime import UTC, datetime

BENCHMARKS = {
    "task_api": "bench.task_api",
}


def main(argv: list[str]) -> int:
    """Run the named benchmarks and print their results for docs/BENCHMARKS.md."""
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")  # noqa: T201
        return 2
    for name in names:
        outcome = importlib.import_module(BENCHMARKS[name]).run()
        print(f"\n### {name}: {datetime.now(UTC):%Y-%m-%d}, {outcome['machine']}\n")  # noqa: T201
        print("| measure | value |\n|---|---|")  # noqa: T201
        for measure, value in outcome["results"].items():
            print(f"| {measure} | {value} |")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
