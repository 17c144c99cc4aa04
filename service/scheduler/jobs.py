"""The job table, in one place, in the shape of Celery's `beat_schedule`.

Each entry is `{"task": name, "schedule": rule, "kwargs": {...}, "options": {"grace": ...}}`.
Times are America/New_York wall-clock times; `plan.py` turns them into UTC instants.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time, timedelta
from typing import Any, Literal

from service.scheduler.plan import Every, Job, MarketTimes, Weekly, every

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "hourly-price-update": {
        "task": "update_portfolio_prices",
        "schedule": MarketTimes(
            regular=every(time(9), time(16), timedelta(hours=1)),
            early=every(time(9), time(13), timedelta(hours=1)),
        ),
        "kwargs": {},
        "options": {"grace": timedelta(minutes=20)},
    },
    "daily-snapshot": {
        "task": "create_portfolio_snapshot",
        "schedule": MarketTimes(regular=(time(16, 30),), early=(time(13, 30),)),
        "kwargs": {},
        "options": {"grace": timedelta(hours=6)},
    },
    "extended-hours-update": {
        "task": "update_portfolio_prices",
        "schedule": MarketTimes(
            regular=every(time(6), time(20), timedelta(minutes=30)),
            early=every(time(6), time(17), timedelta(minutes=30)),
        ),
        "kwargs": {},
        "options": {"grace": timedelta(minutes=10)},
    },
    "weekly-cleanup": {
        "task": "cleanup",
        "schedule": Weekly(weekday=6, at=time(4)),
        "kwargs": {},
        "options": {"grace": timedelta(hours=24)},
    },
}

# Test and smoke-check schedule (SCHEDULER_SCHEDULE=probe): second-level fires of the
# harmless `scheduler_probe` task, so failover can be exercised in seconds. The shadow job
# sends the same task and kwargs, so every other fire coincides and is suppressed.
PROBE_SCHEDULE: dict[str, dict[str, Any]] = {
    "probe-every-2s": {
        "task": "scheduler_probe",
        "schedule": Every(seconds=2),
        "kwargs": {},
        "options": {"grace": timedelta(seconds=30)},
    },
    "probe-shadow-every-4s": {
        "task": "scheduler_probe",
        "schedule": Every(seconds=4),
        "kwargs": {},
        "options": {"grace": timedelta(seconds=30)},
    },
}

ScheduleName = Literal["market", "probe"]
SCHEDULES: dict[ScheduleName, dict[str, dict[str, Any]]] = {
    "market": BEAT_SCHEDULE,
    "probe": PROBE_SCHEDULE,
}


def jobs_from_beat_schedule(schedule: Mapping[str, Mapping[str, Any]]) -> list[Job]:
    """The entries as `Job`s, in table order (which breaks ties between coinciding fires)."""
    return [
        Job(
            id=job_id,
            task=entry["task"],
            rule=entry["schedule"],
            grace=entry["options"]["grace"],
            kwargs=dict(entry.get("kwargs", {})),
        )
        for job_id, entry in schedule.items()
    ]


def jobs_for(name: ScheduleName) -> list[Job]:
    """The jobs of the named schedule (`market` in production, `probe` for tests)."""
    return jobs_from_beat_schedule(SCHEDULES[name])
