"""Run a scheduler replica whose clock says a chosen instant, for tests of what it fires."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import asyncpg

from service.core.publisher import TaskPublisher
from service.core.settings import Settings
from service.scheduler.jobs import jobs_for
from service.scheduler.replica import Scheduler

LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


async def run_leader_at(
    pool: asyncpg.Pool,
    settings: Settings,
    publisher: TaskPublisher,
    *,
    now: datetime,
    fresh: bool = True,
) -> list[tuple[str, str, str]]:
    """Run one replica whose clock says `now` until its first pass is done; return the ledger
    as (job id, scheduled time, state) rows. `fresh` starts from a ledger of a scheduler
    deployed long ago that never fired."""
    if fresh:
        await pool.execute("TRUNCATE schedule_fires, scheduler_jobs, scheduler_probe_runs")
        await pool.execute(
            "INSERT INTO scheduler_jobs (job_id, first_seen_at) SELECT unnest($1::text[]), $2",
            [job.id for job in jobs_for("market")],
            LONG_AGO,
        )
    epoch0 = await pool.fetchval("SELECT epoch FROM scheduler_leader")
    scheduler = Scheduler(
        settings, jobs=jobs_for("market"), publisher=publisher, name="fake-clock", clock=lambda: now
    )
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    try:
        for _ in range(400):
            if await pool.fetchval("SELECT epoch FROM scheduler_leader") != epoch0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the replica never became leader")
        # Becoming leader runs a pass at once; a heartbeat later it has finished.
        await asyncio.sleep(settings.scheduler_heartbeat_seconds + 0.5)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, timeout=10)
    rows = await pool.fetch(
        "SELECT job_id, scheduled_for, state FROM schedule_fires ORDER BY scheduled_for, job_id"
    )
    return [(r["job_id"], r["scheduled_for"].isoformat(), r["state"]) for r in rows]
