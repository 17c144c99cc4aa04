"""The fire ledger and leader election against a real Postgres: fencing, duplicates, locks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from service.core.market_closures import load_trading_calendar
from service.core.settings import Settings
from service.scheduler import ledger
from service.scheduler.jobs import jobs_for
from service.scheduler.leader import LeadershipLost, heartbeat, open_lock_connection, try_acquire
from service.scheduler.plan import Fire
from workers.maintenance.cleanup import prune_fires

JOBS = {job.id: job for job in jobs_for("market")}
AT = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)


async def reset_scheduler_tables(pool: asyncpg.Pool) -> None:
    """Empty the ledger tables so each test starts from a scheduler that never ran."""
    await pool.execute(
        "TRUNCATE schedule_fires, scheduler_jobs, scheduler_probe_runs, market_closures"
    )


@pytest.fixture
async def lock_connection(
    settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[asyncpg.Connection]:
    """A fresh lock connection holding a new leadership term."""
    await reset_scheduler_tables(pool)
    connection = await open_lock_connection(settings, name="test-leader")
    yield connection
    connection.terminate()


class TestClaim:
    async def test_claim_then_second_claim_is_refused(
        self, lock_connection: asyncpg.Connection
    ) -> None:
        """A fire is claimed once; claiming it again (any leader) records nothing."""
        epoch = await try_acquire(lock_connection, name="test-leader")
        assert epoch is not None
        job = JOBS["hourly-price-update"]
        fire = Fire(scheduled_for=AT, job_id=job.id)
        first = await ledger.claim_fire(
            lock_connection, job=job, fire=fire, epoch=epoch, claimed_by="a"
        )
        again = await ledger.claim_fire(
            lock_connection, job=job, fire=fire, epoch=epoch, claimed_by="a"
        )
        assert first == ledger.Claim(state="claimed", duplicate_of=None)
        assert again is None

    async def test_stale_epoch_is_fenced(self, lock_connection: asyncpg.Connection) -> None:
        """A claim under an epoch that is no longer current inserts nothing."""
        epoch = await try_acquire(lock_connection, name="test-leader")
        assert epoch is not None
        job = JOBS["daily-snapshot"]
        fire = Fire(scheduled_for=AT, job_id=job.id)
        fenced = await ledger.claim_fire(
            lock_connection, job=job, fire=fire, epoch=epoch - 1, claimed_by="stale"
        )
        count = await lock_connection.fetchval("SELECT count(*) FROM schedule_fires")
        assert (fenced, count) == (None, 0)

    async def test_coinciding_fire_is_recorded_as_duplicate(
        self, lock_connection: asyncpg.Connection
    ) -> None:
        """The extended fire coinciding with the hourly one is recorded, pointing at the hourly."""
        epoch = await try_acquire(lock_connection, name="test-leader")
        assert epoch is not None
        hourly, extended = JOBS["hourly-price-update"], JOBS["extended-hours-update"]
        first = Fire(scheduled_for=AT, job_id=hourly.id)
        second = Fire(scheduled_for=AT, job_id=extended.id)
        await ledger.claim_fire(
            lock_connection, job=hourly, fire=first, epoch=epoch, claimed_by="a"
        )
        claim = await ledger.claim_fire(
            lock_connection, job=extended, fire=second, epoch=epoch, claimed_by="a"
        )
        assert claim == ledger.Claim(state="duplicate", duplicate_of=first.task_id)
        pending = await ledger.pending_fires(lock_connection)
        assert [p.job_id for p in pending] == [hourly.id]

    async def test_mark_sent_clears_pending(self, lock_connection: asyncpg.Connection) -> None:
        """A sent fire is no longer pending and records the sending epoch."""
        epoch = await try_acquire(lock_connection, name="test-leader")
        assert epoch is not None
        job = JOBS["weekly-cleanup"]
        fire = Fire(scheduled_for=AT, job_id=job.id)
        await ledger.claim_fire(lock_connection, job=job, fire=fire, epoch=epoch, claimed_by="a")
        await ledger.mark_sent(lock_connection, task_id=fire.task_id, epoch=epoch)
        rows = await ledger.recent_fires(lock_connection, job_id=job.id, limit=5)
        assert await ledger.pending_fires(lock_connection) == []
        assert [(r.state, r.task_id, r.epoch) for r in rows] == [("sent", fire.task_id, epoch)]

    async def test_first_seen_is_kept(self, lock_connection: asyncpg.Connection) -> None:
        """Registering jobs again keeps the time they were first seen."""
        first = await ledger.register_jobs(lock_connection, ["a", "b"], now=AT)
        again = await ledger.register_jobs(
            lock_connection, ["a", "b", "c"], now=AT + timedelta(seconds=1)
        )
        assert again["a"] == first["a"]
        assert again["c"] > first["b"]

    async def test_prune_keeps_recent_and_unsent(self, lock_connection: asyncpg.Connection) -> None:
        """Pruning deletes settled fires before the cutoff and keeps claimed ones."""
        epoch = await try_acquire(lock_connection, name="test-leader")
        assert epoch is not None
        job = JOBS["daily-snapshot"]
        old_sent = Fire(scheduled_for=AT - timedelta(days=200), job_id=job.id)
        old_claimed = Fire(scheduled_for=AT - timedelta(days=199), job_id=job.id)
        recent = Fire(scheduled_for=AT, job_id=job.id)
        for fire in (old_sent, old_claimed, recent):
            await ledger.claim_fire(
                lock_connection, job=job, fire=fire, epoch=epoch, claimed_by="a"
            )
        await ledger.mark_sent(lock_connection, task_id=old_sent.task_id, epoch=epoch)
        await ledger.mark_sent(lock_connection, task_id=recent.task_id, epoch=epoch)
        deleted = await prune_fires(lock_connection, before=AT - timedelta(days=90))
        left = await lock_connection.fetchval("SELECT count(*) FROM schedule_fires")
        assert (deleted, left) == (1, 2)


class TestLeader:
    async def test_one_leader_and_epoch_increments(
        self, settings: Settings, lock_connection: asyncpg.Connection
    ) -> None:
        """Only one connection holds the lock; the next holder gets the next epoch."""
        other = await open_lock_connection(settings, name="other")
        try:
            mine = await try_acquire(lock_connection, name="test-leader")
            assert mine is not None
            assert await try_acquire(other, name="other") is None
            await heartbeat(lock_connection, epoch=mine)
            lock_connection.terminate()
            taken = None
            for _ in range(50):
                taken = await try_acquire(other, name="other")
                if taken is not None:
                    break
                await asyncio.sleep(0.05)
            assert taken == mine + 1
        finally:
            other.terminate()

    async def test_heartbeat_detects_new_epoch(self, lock_connection: asyncpg.Connection) -> None:
        """A leader whose epoch was superseded learns it at its next heartbeat."""
        epoch = await try_acquire(lock_connection, name="test-leader")
        assert epoch is not None
        await lock_connection.execute("UPDATE scheduler_leader SET epoch = epoch + 1")
        with pytest.raises(LeadershipLost):
            await heartbeat(lock_connection, epoch=epoch)

    async def test_lock_connection_has_session_timeouts(
        self, settings: Settings, lock_connection: asyncpg.Connection
    ) -> None:
        """The lock connection carries idle-session and TCP timeouts so a frozen leader loses it."""
        expected = f"{settings.scheduler_session_timeout_seconds}s"
        shown = {
            name: await lock_connection.fetchval(f"SHOW {name}")
            for name in (
                "idle_session_timeout",
                "idle_in_transaction_session_timeout",
                "tcp_user_timeout",
            )
        }
        assert shown == {
            "idle_session_timeout": expected,
            "idle_in_transaction_session_timeout": expected,
            "tcp_user_timeout": str(settings.scheduler_session_timeout_seconds * 1000),
        }


class TestClosures:
    async def test_override_table_closes_the_day(self, pool: asyncpg.Pool) -> None:
        """A row in market_closures makes that day a non-trading day."""
        await reset_scheduler_tables(pool)
        await pool.execute(
            "INSERT INTO market_closures (day, reason) VALUES ('2026-03-09', 'test closure')"
        )
        async with pool.acquire() as connection:
            calendar = await load_trading_calendar(connection)
        assert not calendar.is_trading_day(date(2026, 3, 9))
        assert calendar.is_trading_day(date(2026, 3, 10))
        await pool.execute("TRUNCATE market_closures")
