"""Portfolio analytics: snapshots, performance metrics and reports. docs/METRICS.md.

Other packages use the task bodies and the two building blocks below (the demo seed
snapshots its portfolios; the benchmarks time them); the rest is private to analytics.
"""

from workers.analytics.performance_run import calculate_performance
from workers.analytics.portfolio_reads import select_portfolios
from workers.analytics.snapshots import snapshot_portfolios
from workers.analytics.tasks import (
    calculate_portfolio_performance,
    create_portfolio_snapshot,
    generate_portfolio_report,
)

__all__ = [
    "calculate_performance",
    "calculate_portfolio_performance",
    "create_portfolio_snapshot",
    "generate_portfolio_report",
    "select_portfolios",
    "snapshot_portfolios",
]
