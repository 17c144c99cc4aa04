"""The fire ledger (outbox) in Postgres: claim a fire, fenced on the leader epoch; mark it sent.

Every function takes the connection to use; the leader passes its lock-holding
connection so a claim and the lock live and die together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from service.scheduler.plan import Fire, Job

NOTIFY_CHANNEL = "findash_schedule"

ClaimState = Literal["claimed", "duplicate"]

# The fence: the INSERT only happens while the epoch row still says `mine`. FOR SHARE makes a
# concurrent epoch bump wait for (or re-check against) this claim, so a stale leader fails closed.
_CLAIM = """
WITH fence AS (
    SELECT epoch FROM scheduler_leader WHERE id = 1 AND epoch = $3 FOR SHARE
), dup AS (
    SELECT task_id FROM schedule_fires
    WHERE dedupe_key = $7 AND scheduled_for = $2 AND state <> 'duplicate'
    LIMIT 1
)
INSERT INTO schedule_fires
    (job_id, scheduled_for, epoch, task_id, task_name, kwargs, dedupe_key, state,
     duplicate_of, source, claimed_by)
SELECT $1, $2, $3, $4::uuid, $5, $6::jsonb, $7,
       CASE WHEN (SELECT task_id FROM dup) IS NULL THEN 'claimed' ELSE 'duplicate' END,
       (SELECT task_id FROM dup), $8, $9
FROM fence
ON CONFLICT DO NOTHING
RETURNING state, duplicate_of
"""

# A manual fire (`findash schedule run`) is claimed outside any leadership term under the
# current epoch, then sent by the leader, which is woken through NOTIFY.
_CLAIM_MANUAL = """
INSERT INTO schedule_fires
    (job_id, scheduled_for, epoch, task_id, task_name, kwargs, dedupe_key, state,
     source, claimed_by)
SELECT $1, $2, epoch, $3::uuid, $4, $5::jsonb, $6, 'claimed', 'manual', $7
FROM scheduler_leader WHERE id = 1
ON CONFLICT DO NOTHING
RETURNING epoch
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of a successful claim."""

    state: ClaimState
    duplicate_of: str | None


@dataclass(frozen=True, slots=True)
class PendingFire:
    """A claimed fire not yet sent (orphaned by a dead leader, or claimed by the CLI)."""

    job_id: str
    scheduled_for: datetime
    task_id: str
    task_name: str
    kwargs: dict[str, Any]
    epoch: int
    source: str


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One fire as the CLI shows it."""

    job_id: str
    scheduled_for: datetime
    state: str
    task_id: str
    epoch: int
    source: str
    sent_at: datetime | None
    task_state: str | None


async def claim_fire(
    connection: asyncpg.Connection,
    *,
    job: Job,
    fire: Fire,
    epoch: int,
    claimed_by: str,
) -> Claim | None:
    """Record `fire` as claimed (or as a duplicate of a coinciding fire) under `epoch`.

    None when the fire was already in the ledger or `epoch` is no longer current.
    """
    row = await connection.fetchrow(
        _CLAIM,
        job.id,
        fire.scheduled_for,
        epoch,
        fire.task_id,
        job.task.name,
        json.dumps(job.task_at(fire.scheduled_for).kwargs()),
        job.dedupe_key,
        "schedule",
        claimed_by,
    )
    if row is None:
        return None
    duplicate_of = row["duplicate_of"]
    return Claim(
        state=row["state"], duplicate_of=None if duplicate_of is None else str(duplicate_of)
    )


async def claim_manual_fire(
    connection: asyncpg.Connection, *, job: Job, fire: Fire, claimed_by: str
) -> bool:
    """Claim a fire requested by an operator and wake the leader to send it."""
    async with connection.transaction():
        epoch = await connection.fetchval(
            _CLAIM_MANUAL,
            job.id,
            fire.scheduled_for,
            fire.task_id,
            job.task.name,
            json.dumps(job.task_at(fire.scheduled_for).kwargs()),
            job.dedupe_key,
            claimed_by,
        )
        if epoch is not None:
            await connection.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, fire.task_id)
    return epoch is not None


async def current_epoch(connection: asyncpg.Connection) -> int:
    """The epoch of the current (or last) leadership term."""
    epoch: int = await connection.fetchval("SELECT epoch FROM scheduler_leader WHERE id = 1")
    return epoch


async def mark_sent(connection: asyncpg.Connection, *, task_id: str, epoch: int) -> None:
    """Record that the fire's task was handed to the broker by the leader of `epoch`."""
    await connection.execute(
        "UPDATE schedule_fires SET state = 'sent', sent_at = now(), sent_epoch = $2 "
        "WHERE task_id = $1::uuid AND state = 'claimed'",
        task_id,
        epoch,
    )


async def mark_expired(connection: asyncpg.Connection, *, task_id: str) -> None:
    """Record that a claimed fire was never sent within its grace window."""
    await connection.execute(
        "UPDATE schedule_fires SET state = 'expired'"
        " WHERE task_id = $1::uuid AND state = 'claimed'",
        task_id,
    )


async def pending_fires(connection: asyncpg.Connection) -> list[PendingFire]:
    """Claimed fires not yet sent, oldest first."""
    rows = await connection.fetch(
        "SELECT job_id, scheduled_for, task_id::text AS task_id, task_name, kwargs::text AS kwargs,"
        " epoch, source FROM schedule_fires WHERE state = 'claimed' ORDER BY scheduled_for"
    )
    return [
        PendingFire(
            job_id=row["job_id"],
            scheduled_for=row["scheduled_for"],
            task_id=row["task_id"],
            task_name=row["task_name"],
            kwargs=json.loads(row["kwargs"]),
            epoch=row["epoch"],
            source=row["source"],
        )
        for row in rows
    ]


async def known_fires(
    connection: asyncpg.Connection, *, since: datetime
) -> set[tuple[str, datetime]]:
    """`(job_id, scheduled_for)` of every ledger row at or after `since`."""
    rows = await connection.fetch(
        "SELECT job_id, scheduled_for FROM schedule_fires WHERE scheduled_for >= $1", since
    )
    return {(row["job_id"], row["scheduled_for"]) for row in rows}


async def register_jobs(
    connection: asyncpg.Connection, job_ids: list[str], *, now: datetime
) -> dict[str, datetime]:
    """Record jobs not seen before as first seen at `now` (the scheduler's clock) and return
    when each job was first seen."""
    await connection.execute(
        "INSERT INTO scheduler_jobs (job_id, first_seen_at) SELECT unnest($1::text[]), $2"
        " ON CONFLICT DO NOTHING",
        job_ids,
        now,
    )
    rows = await connection.fetch(
        "SELECT job_id, first_seen_at FROM scheduler_jobs WHERE job_id = any($1::text[])", job_ids
    )
    return {row["job_id"]: row["first_seen_at"] for row in rows}


async def recent_fires(
    connection: asyncpg.Connection, *, job_id: str, limit: int
) -> list[LedgerRow]:
    """The job's latest fires, newest first, with the task registry's state when it exists."""
    # The task registry (issue 3) may be absent in a branch or an older database.
    has_registry = await connection.fetchval(
        "SELECT count(*) = 2 FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'tasks'"
        " AND column_name IN ('id', 'state')"
    )
    task_state = (
        "(SELECT t.state::text FROM tasks t WHERE t.id::text = f.task_id::text)"
        if has_registry
        else "NULL::text"
    )
    rows = await connection.fetch(
        f"SELECT f.job_id, f.scheduled_for, f.state, f.task_id::text AS task_id, f.epoch,"  # noqa: S608 - fixed fragments only
        f" f.source, f.sent_at, {task_state} AS task_state"
        " FROM schedule_fires f WHERE f.job_id = $1 ORDER BY f.scheduled_for DESC LIMIT $2",
        job_id,
        limit,
    )
    return [LedgerRow(**dict(row)) for row in rows]
