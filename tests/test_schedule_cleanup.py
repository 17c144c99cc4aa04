"""The weekly `cleanup` task on a real worker prunes finished registry rows, settled ledger
fires and probe runs by age."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest
from celery import Celery

from service.api.assets import MAX_PRICE_ROWS, PRICES_VERSION
from service.core.celery_config import create_celery_app
from service.core.settings import Settings
from service.scheduler import ledger
from service.scheduler.jobs import jobs_for
from service.scheduler.leader import open_lock_connection, try_acquire
from service.scheduler.plan import Fire
from tests.conftest import PINNED_CLOCK
from tests.portfolio_data import put_closes
from tests.processes import ManagedProcess

JOB = next(job for job in jobs_for("market") if job.id == "daily-snapshot")


@pytest.fixture(scope="module")
def publisher(settings: Settings) -> Iterator[Celery]:
    """A publishing-only Celery app."""
    app = create_celery_app(settings)
    yield app
    app.close()


class TestCleanupTask:
    async def test_prunes_old_settled_rows_only(
        self, worker: ManagedProcess, publisher: Celery, pool: asyncpg.Pool, settings: Settings
    ) -> None:
        """Old sent fires and old probe runs go; recent fires and unsent claims stay."""
        await pool.execute("TRUNCATE schedule_fires, scheduler_jobs, scheduler_probe_runs")
        now = PINNED_CLOCK()  # the worker's clock: ages are measured from it
        old_sent = Fire(scheduled_for=now - timedelta(days=100), job_id=JOB.id)
        old_claimed = Fire(scheduled_for=now - timedelta(days=99), job_id=JOB.id)
        recent = Fire(scheduled_for=now - timedelta(days=1), job_id=JOB.id)
        connection = await open_lock_connection(settings, name="cleanup-test")
        try:
            epoch = await try_acquire(connection, name="cleanup-test")
            assert epoch is not None
            for fire in (old_sent, old_claimed, recent):
                await ledger.claim_fire(connection, job=JOB, fire=fire, epoch=epoch, claimed_by="t")
            for fire in (old_sent, recent):
                await ledger.mark_sent(connection, task_id=fire.task_id, epoch=epoch)
        finally:
            connection.terminate()
        await pool.execute(
            "INSERT INTO scheduler_probe_runs (task_id, runs, last_run_at) VALUES"
            " (gen_random_uuid(), 1, $1), (gen_random_uuid(), 1, $2)",
            now - timedelta(days=100),
            now,
        )
        old_task, recent_task, unfinished_task = (str(uuid.uuid4()) for _ in range(3))
        await pool.execute(
            "INSERT INTO tasks (id, name, params_hash, state, finished_at) VALUES"
            " ($1, 'demo_fetch', 'h1', 'SUCCESS', $4),"
            " ($2, 'demo_fetch', 'h2', 'FAILURE', $5),"
            " ($3, 'demo_fetch', 'h3', 'PENDING', NULL)",
            old_task,
            recent_task,
            unfinished_task,
            now - timedelta(days=100),
            now - timedelta(days=1),
        )
        result = publisher.send_task(
            "cleanup", kwargs={"ledger_retention_days": 90, "task_retention_days": 30}
        )
        counts: dict[str, Any] = result.get(timeout=30)
        left = await pool.fetch("SELECT task_id::text AS task_id FROM schedule_fires")
        assert counts["fires"] == 1
        assert counts["probe_runs"] == 1
        assert {row["task_id"] for row in left} == {old_claimed.task_id, recent.task_id}
        assert await pool.fetchval("SELECT count(*) FROM scheduler_probe_runs") == 1
        kept = await pool.fetch(
            "SELECT id FROM tasks WHERE id = ANY($1::text[])",
            [old_task, recent_task, unfinished_task],
        )
        assert {row["id"] for row in kept} == {recent_task, unfinished_task}
        assert counts["tasks"] >= 1

    async def test_write_logs_fold_to_one_row_and_the_version_moves(
        self, worker: ManagedProcess, publisher: Celery, pool: asyncpg.Pool
    ) -> None:
        """Three writes of a symbol's prices log three rows; cleanup leaves one, and the
        prices' version (so their ETag) moves; a deleted asset's log goes. The valuation
        inputs' log keeps no transaction older than the cleanup, which adds its own."""
        symbol, gone = f"FOLD{uuid.uuid4().hex[:6].upper()}", f"GONE{uuid.uuid4().hex[:6].upper()}"
        for close in (1.0, 2.0, 3.0):
            await put_closes(pool, symbol, {date(2024, 1, 2): close})
        await put_closes(pool, gone, {date(2024, 1, 2): 1.0})
        await pool.execute("DELETE FROM assets WHERE symbol = $1", gone)
        logged = "SELECT count(*) FROM price_writes WHERE symbol = $1"
        assert await pool.fetchval(logged, symbol) == 3
        assert await pool.fetchval(logged, gone) >= 1
        version = f"SELECT version FROM ({PRICES_VERSION}) v"  # noqa: S608 - constant text
        before = await pool.fetchval(version, symbol, None, None, MAX_PRICE_ROWS)
        last_input_write = await pool.fetchval("SELECT max(xid)::text FROM valuation_input_writes")
        counts = publisher.send_task("cleanup").get(timeout=30)
        assert counts["write_log_rows"] >= 3
        assert await pool.fetchval(logged, symbol) == 1
        assert await pool.fetchval(logged, gone) == 0
        assert await pool.fetchval(version, symbol, None, None, MAX_PRICE_ROWS) != before
        logged_inputs = (
            "SELECT count(*) FILTER (WHERE xid <= $1::text::xid8) AS older,"
            " count(*) FILTER (WHERE xid > $1::text::xid8) AS newer FROM valuation_input_writes"
        )
        folded = await pool.fetchrow(logged_inputs, last_input_write)
        assert (folded["older"], folded["newer"] >= 1) == (0, True)

    def test_unknown_kwarg_fails_the_task(self, worker: ManagedProcess, publisher: Celery) -> None:
        """An unknown parameter is refused rather than silently ignored."""
        result = publisher.send_task("cleanup", kwargs={"retention": 1})
        with pytest.raises(Exception, match="retention"):
            result.get(timeout=30)
