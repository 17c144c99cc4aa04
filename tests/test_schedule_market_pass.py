"""One leader, in process, running the market table against a fake clock on real Postgres and
Redis: catch-up within grace, coinciding fires suppressed, holidays silent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from service.core.contracts import UpdatePortfolioPrices
from service.core.publisher import TaskPublisher
from service.core.settings import Settings
from service.dev.embedded import free_port
from service.scheduler.replica import create_publisher
from tests.scheduling import run_leader_at


@pytest.fixture(scope="module")
def publisher(settings: Settings) -> Iterator[TaskPublisher]:
    """The scheduler's publisher on the session's Redis."""
    app = create_publisher(settings)
    yield app
    app.close()


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
        """A leader starting at 18:00 EST on the early-close day sends the 13:05 session
        closes and the 13:30 snapshot (within their 6 h grace) and nothing else (the 17:00
        extended fire is past its 10 min)."""
        ledger = await run_leader_at(
            pool, settings, publisher, now=datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
        )
        assert ledger == [
            ("session-closes", "2026-11-27T18:05:00+00:00", "sent"),
            ("daily-snapshot", "2026-11-27T18:30:00+00:00", "sent"),
        ]

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
        # The failed send ends the pass (heartbeats go on), so the later fires wait too.
        assert first == [("session-closes", "2026-03-09T20:05:00+00:00", "claimed")]
        assert second == [
            ("session-closes", "2026-03-09T20:05:00+00:00", "sent"),
            ("daily-snapshot", "2026-03-09T20:30:00+00:00", "sent"),
            ("extended-hours-update", "2026-03-09T20:30:00+00:00", "sent"),
        ]

    async def test_a_claimed_fire_no_contract_accepts_is_dropped_not_fatal(
        self, pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher
    ) -> None:
        """A fire claimed by an older release for a task this release no longer knows is
        marked expired, and the claimed fire after it is still sent in the same term."""
        now = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # Thanksgiving: nothing else is due
        assert await run_leader_at(pool, settings, publisher, now=now) == []
        for job_id, minutes, task_name in (
            ("retired-job", 2, "retired_task"),
            ("hourly-price-update", 1, UpdatePortfolioPrices.name),
        ):
            await pool.execute(
                "INSERT INTO schedule_fires (job_id, scheduled_for, epoch, task_id, task_name,"
                " dedupe_key, state, source, claimed_by)"
                " SELECT $1, $2, epoch, $3::uuid, $4, $1, 'claimed', 'manual', 'an-old-release'"
                " FROM scheduler_leader",
                job_id,
                now - timedelta(minutes=minutes),
                str(uuid.uuid4()),
                task_name,
            )

        ledger = await run_leader_at(pool, settings, publisher, now=now, fresh=False)

        assert ledger == [
            ("retired-job", "2026-11-26T16:58:00+00:00", "expired"),
            ("hourly-price-update", "2026-11-26T16:59:00+00:00", "sent"),
        ]
