"""`just bench [name ...]`: run benchmarks (all by default) and print their results.

A benchmark module exposes `run() -> {"machine", "results"}` (printed here as a Markdown
table) or `main()` (which prints its own table).
"""

from __future__ import annotations

import importlib
import sys
from datetime import UTC, datetime

BENCHMARKS = {
    "task_api": "bench.task_api",
    "analytics": "bench.analytics",
    "market_data": "bench.market_data",
    "scheduler_failover": "bench.scheduler_failover",
    "reads": "bench.reads",
    "quotes": "bench.quotes",
}


def main(argv: list[str]) -> int:
    """Run the named benchmarks and print their results for docs/BENCHMARKS.md."""
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")  # noqa: T201
        return 2
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        if not hasattr(module, "run"):
            print(f"== {name}")  # noqa: T201
            module.main()
            continue
        outcome = module.run()
        print(f"\n### {name}: {datetime.now(UTC):%Y-%m-%d}, {outcome['machine']}\n")  # noqa: T201
        print("| measure | value |\n|---|---|")  # noqa: T201
        for measure, value in outcome["results"].items():
            print(f"| {measure} | {value} |")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
