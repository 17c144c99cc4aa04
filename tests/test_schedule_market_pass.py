"""One leader, in process, running the market table against a fake clock on real Postgres and
Redis: catch-up within grace, coinciding fires suppressed, holidays silent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from service.core.publisher import TaskPublisher
from service.core.settings import Settings
from service.dev.embedded import free_port
from service.scheduler.jobs import jobs_for
from service.scheduler.replica import Scheduler, create_publisher

LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def publisher(settings: Settings) -> Iterator[TaskPublisher]:
    """The scheduler's publisher on the session's Redis."""
    app = create_publisher(settings)
    yield app
    app.close()


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


class TestMarketPass:
    async def test_coinciding_fires_and_grace(
        self, pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher
    ) -> None:
        """At 10:05 EDT on 2026-03-09 the 10:00 hourly fire is sent and the coinciding
        extended fire is recorded as a duplicate; older fires are past their grace."""
        ledger = await run_leader_at(
            pool, settings, publisher, now=datetime(2026, 3, 9, 14, 5, tzinfo=UTC)
        )
        assert ledger == [
            ("extended-hours-update", "2026-03-09T14:00:00+00:00", "duplicate"),
            ("hourly-price-update", "2026-03-09T14:00:00+00:00", "sent"),
        ]

    async def test_snapshot_caught_up_hours_later(
        self, pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher
    ) -> None:
        """A leader starting at 18:00 EST on the early-close day sends the 13:30 snapshot
        (within its 6 h grace) and nothing else (the 17:00 extended fire is past its 10 min)."""
        ledger = await run_leader_at(
            pool, settings, publisher, now=datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
        )
        assert ledger == [("daily-snapshot", "2026-11-27T18:30:00+00:00", "sent")]

    async def test_holiday_is_silent(
        self, pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher
    ) -> None:
        """At noon on Thanksgiving 2026 no market job is due."""
        ledger = await run_leader_at(
            pool, settings, publisher, now=datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
        )
        assert ledger == []

    async def test_broker_down_keeps_fire_claimed_until_a_leader_can_send(
        self, pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher
    ) -> None:
        """With the broker unreachable the fire stays claimed; the next leader that reaches the
        broker sends it under the same task id."""
        now = datetime(2026, 3, 9, 20, 35, tzinfo=UTC)
        dead_url = f"redis://127.0.0.1:{free_port()}/0"
        dead = msgspec.structs.replace(
            settings, celery_broker_url=dead_url, celery_result_backend=dead_url
        )
        unreachable = create_publisher(dead)
        try:
            first = await run_leader_at(pool, settings, unreachable, now=now)
        finally:
            unreachable.close()
        second = await run_leader_at(pool, settings, publisher, now=now, fresh=False)
        # The failed send ends the pass (heartbeats go on), so 16:30's extended fire waits too.
        assert first == [("daily-snapshot", "2026-03-09T20:30:00+00:00", "claimed")]
        assert second == [
            ("daily-snapshot", "2026-03-09T20:30:00+00:00", "sent"),
            ("extended-hours-update", "2026-03-09T20:30:00+00:00", "sent"),
        ]
