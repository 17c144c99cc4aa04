"""The `scheduler_probe` task: counts its own executions per task id.

Deliberately not idempotent: each execution increments `runs`, so a fire that
ran twice shows `runs = 2`. Failover tests read it to prove no fire ran twice;
operators can schedule it (SCHEDULER_SCHEDULE=probe) as an end-to-end smoke check.
"""

from __future__ import annotations

from typing import Any

from service.core.contracts import SchedulerProbe
from workers.runtime import TaskContext


async def scheduler_probe(ctx: TaskContext, task: SchedulerProbe) -> dict[str, Any]:
    """Record one run of this task id; return the run count so far."""
    async with ctx.pool.acquire() as connection:
        runs: int = await connection.fetchval(
            "INSERT INTO scheduler_probe_runs (task_id, runs) VALUES ($1::uuid, 1)"
            " ON CONFLICT (task_id) DO UPDATE"
            " SET runs = scheduler_probe_runs.runs + 1, last_run_at = now()"
            " RETURNING runs",
            ctx.task_id,
        )
    return {"task_id": ctx.task_id, "runs": runs}
