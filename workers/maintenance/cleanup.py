"""The `cleanup` task (weekly): prune old task-registry rows, expired idempotency keys,
scheduler ledger rows and probe runs.

Celery results in Redis expire by themselves (`CELERY_RESULT_EXPIRES`); this
prunes what lives in Postgres. Every delete is by age, so running twice is harmless.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from service.core import idempotency
from service.core.contracts import Cleanup
from service.core.logs import get_logger
from workers.runtime import TaskContext

log = get_logger(__name__)


async def prune_fires(connection: asyncpg.Connection, *, before: datetime) -> int:
    """Delete ledger rows scheduled before `before` that are settled (not still claimed)."""
    status: str = await connection.execute(
        "DELETE FROM schedule_fires WHERE scheduled_for < $1 AND state <> 'claimed'", before
    )
    return int(status.rsplit(" ", 1)[-1])


def _deleted(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def cleanup(ctx: TaskContext, params: Cleanup) -> dict[str, int]:
    """Delete finished registry rows, settled ledger fires and probe runs past their retention."""
    settings = ctx.settings
    now = ctx.clock()
    task_cutoff = now - timedelta(
        days=params.task_retention_days or settings.cleanup_task_retention_days
    )
    ledger_cutoff = now - timedelta(
        days=params.ledger_retention_days or settings.scheduler_ledger_retention_days
    )
    async with ctx.pool.acquire() as connection:
        tasks = _deleted(
            await connection.execute(
                "DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < $1",
                task_cutoff,
            )
        )
        keys = await idempotency.prune(connection)
        fires = await prune_fires(connection, before=ledger_cutoff)
        probes = _deleted(
            await connection.execute(
                "DELETE FROM scheduler_probe_runs WHERE last_run_at < $1", ledger_cutoff
            )
        )
    counts = {"tasks": tasks, "idempotency_keys": keys, "fires": fires, "probe_runs": probes}
    log.info("cleanup done", **counts)
    return counts
