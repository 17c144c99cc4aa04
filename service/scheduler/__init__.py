"""The scheduler: an elected leader sends the market-hours jobs, each fire exactly once.
docs/SCHEDULER.md.

`python -m service.scheduler` runs a replica. The CLI uses the job table, the planner and
the ledger below; the rest is private to the scheduler.
"""

from service.scheduler import ledger
from service.scheduler.jobs import MARKET_JOBS, PROBE_JOBS, jobs_for
from service.scheduler.plan import Every, Fire, Job, MarketTimes, Weekly, next_fires
from service.scheduler.replica import Scheduler, create_publisher

__all__ = [
    "MARKET_JOBS",
    "PROBE_JOBS",
    "Every",
    "Fire",
    "Job",
    "MarketTimes",
    "Scheduler",
    "Weekly",
    "create_publisher",
    "jobs_for",
    "ledger",
    "next_fires",
]
