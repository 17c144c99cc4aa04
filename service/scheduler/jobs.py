"""The job table, in one place: each job is an id, a task contract instance, a rule and a
grace period (how late a fire may still be sent after a pause or a failover).

Times are America/New_York wall-clock times; `plan.py` turns them into UTC instants.
Adding a schedule is one entry here (docs/TASKS.md).
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Literal

from service.core.contracts import (
    Cleanup,
    CreatePortfolioSnapshot,
    SchedulerProbe,
    StoreSessionCloses,
    UpdatePortfolioPrices,
)
from service.scheduler.plan import Every, Job, MarketTimes, Weekly, every

MARKET_JOBS: tuple[Job, ...] = (
    # No arguments: every symbol held in any portfolio (the contract's documented meaning).
    Job(
        id="hourly-price-update",
        task=UpdatePortfolioPrices(),
        rule=MarketTimes(
            regular=every(time(9), time(16), timedelta(hours=1)),
            early=every(time(9), time(13), timedelta(hours=1)),
        ),
        grace=timedelta(minutes=20),
    ),
    # After each close: that session's bar for every held symbol and the benchmark, so the
    # snapshot below values the portfolios at it. `as_of` is the fire's instant.
    Job(
        id="session-closes",
        task=StoreSessionCloses(),
        rule=MarketTimes(regular=(time(16, 5),), early=(time(13, 5),)),
        grace=timedelta(hours=6),
    ),
    # No arguments: every portfolio, valued at the session last completed at the fire.
    Job(
        id="daily-snapshot",
        task=CreatePortfolioSnapshot(),
        rule=MarketTimes(regular=(time(16, 30),), early=(time(13, 30),)),
        grace=timedelta(hours=6),
    ),
    Job(
        id="extended-hours-update",
        task=UpdatePortfolioPrices(),
        rule=MarketTimes(
            regular=every(time(6), time(20), timedelta(minutes=30)),
            early=every(time(6), time(17), timedelta(minutes=30)),
        ),
        grace=timedelta(minutes=10),
    ),
    # No arguments: the retention settings.
    Job(
        id="weekly-cleanup",
        task=Cleanup(),
        rule=Weekly(weekday=6, at=time(4)),
        grace=timedelta(hours=24),
    ),
)

# Test and smoke-check schedule (SCHEDULER_SCHEDULE=probe): second-level fires of the
# harmless `scheduler_probe` task, so failover can be exercised in seconds. The shadow job
# sends the same task and arguments, so every other fire coincides and is suppressed.
PROBE_JOBS: tuple[Job, ...] = (
    Job(
        id="probe-every-2s",
        task=SchedulerProbe(),
        rule=Every(seconds=2),
        grace=timedelta(seconds=30),
    ),
    Job(
        id="probe-shadow-every-4s",
        task=SchedulerProbe(),
        rule=Every(seconds=4),
        grace=timedelta(seconds=30),
    ),
)

ScheduleName = Literal["market", "probe"]
SCHEDULES: dict[ScheduleName, tuple[Job, ...]] = {"market": MARKET_JOBS, "probe": PROBE_JOBS}


def jobs_for(name: ScheduleName) -> list[Job]:
    """The jobs of the named schedule (`market` in production, `probe` for tests), in table
    order (which breaks ties between coinciding fires)."""
    return list(SCHEDULES[name])
