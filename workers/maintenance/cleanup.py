"""The `cleanup` task (weekly): prune old task-registry rows, expired idempotency keys,
scheduler ledger rows and probe runs, and fold the write logs of polled reads.

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


# Each write log (migrations/0013) keeps a row per key and writing transaction. Folding
# replaces a key's rows by one row of this transaction, a new version (kept bodies are rebuilt
# once), and drops the keys of deleted portfolios and assets.
_FOLDS = {
    "snapshot_writes": ("portfolio_id", "SELECT id FROM portfolios"),
    "price_writes": ("symbol", "SELECT symbol FROM assets"),
}


# The valuation inputs' log (migrations/0014) is read from the oldest transaction running
# when a kept answer's inputs were read: rows older than every running transaction are only
# history. They go, and this transaction's row moves every kept answer's check once.
_FOLD_VALUATION_INPUT_WRITES = """
WITH dropped AS (
    DELETE FROM valuation_input_writes WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
    RETURNING 1
),
marked AS (
    INSERT INTO valuation_input_writes DEFAULT VALUES ON CONFLICT DO NOTHING RETURNING 1
)
SELECT (SELECT count(*) FROM dropped) - (SELECT count(*) FROM marked)
"""


async def fold_write_logs(connection: asyncpg.Connection) -> int:
    """Fold the polled reads' write logs; the number of rows removed."""
    removed = 0
    for table, (key, existing) in _FOLDS.items():
        async with connection.transaction():
            folded: int = await connection.fetchval(
                f"""
                WITH crowded AS (
                    SELECT {key} FROM {table} GROUP BY {key}
                    HAVING count(*) > 1 OR {key} NOT IN ({existing})
                ),
                dropped AS (
                    DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM crowded)
                    RETURNING {key}
                ),
                kept AS (
                    INSERT INTO {table} ({key})
                    SELECT DISTINCT {key} FROM dropped WHERE {key} IN ({existing})
                    ON CONFLICT DO NOTHING RETURNING 1
                )
                SELECT (SELECT count(*) FROM dropped) - (SELECT count(*) FROM kept)
                """  # noqa: S608 - constant identifiers
            )
        removed += folded
    async with connection.transaction():
        folded = await connection.fetchval(_FOLD_VALUATION_INPUT_WRITES)
    return removed + folded


def _deleted(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def cleanup(ctx: TaskContext, params: Cleanup) -> dict[str, int]:
    """Delete finished registry rows, settled ledger fires and probe runs past their retention;
    fold the write logs."""
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
        write_log_rows = await fold_write_logs(connection)
    counts = {
        "tasks": tasks,
        "idempotency_keys": keys,
        "fires": fires,
        "probe_runs": probes,
        "write_log_rows": write_log_rows,
    }
    log.info("cleanup done", **counts)
    return counts
