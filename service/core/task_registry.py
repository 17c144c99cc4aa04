"""The task registry: one Postgres row per task, the source of truth for status and history.

The API records a row (PENDING) before publishing; the worker's runtime claims it when
a copy starts, heartbeats it, records progress and the outcome. States only move
forward: a finished row (SUCCESS, FAILURE, REVOKED) never changes again, and a copy
that arrives for a finished or already-running task is dropped, so a task id sent
twice runs once.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec

TaskState = Literal["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]
ACTIVE_STATES: tuple[TaskState, ...] = ("PENDING", "STARTED", "PROGRESS", "RETRY")
TERMINAL_STATES: tuple[TaskState, ...] = ("SUCCESS", "FAILURE", "REVOKED")
MAX_ATTEMPTS = 4


class Progress(msgspec.Struct, frozen=True):
    """How far a task is: `current` of `total`, and what it is doing."""

    current: int
    total: int
    message: str = ""


class TaskError(msgspec.Struct, frozen=True):
    """Why a task failed."""

    type: str
    message: str


class TaskStatus(msgspec.Struct, frozen=True):
    """What the API says about a task."""

    task_id: str
    name: str
    state: TaskState
    progress: Progress | None
    result: Any
    error: TaskError | None
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def params_hash(name: str, params: dict[str, Any]) -> str:
    """A stable digest of a task's name and canonical parameters, for duplicate detection."""
    canonical = json.dumps({"name": name, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


_STATUS_COLUMNS = (
    "id, name, state, progress, result, error, submitted_at, started_at, finished_at, owner_id"
)


def status_from_row(row: asyncpg.Record) -> TaskStatus:
    """Build the API's view of a registry row."""
    progress = row["progress"]
    error = row["error"]
    return TaskStatus(
        task_id=row["id"],
        name=row["name"],
        state=row["state"],
        progress=Progress(**progress) if progress else None,
        result=row["result"],
        error=TaskError(type=error.get("type", "Error"), message=error.get("message", ""))
        if error
        else None,
        submitted_at=row["submitted_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


async def record_submission(
    connection: asyncpg.Connection,
    *,
    task_id: str,
    owner_id: int | None,
    name: str,
    params: dict[str, Any],
    request_id: str | None,
) -> tuple[str, bool]:
    """Record a new PENDING task; if an identical one is unfinished, return its id instead.

    Returns `(task_id, created)`.
    """
    digest = params_hash(name, params)
    for _ in range(3):
        created = await connection.fetchval(
            """
            INSERT INTO tasks (id, owner_id, name, params, params_hash, request_id)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT DO NOTHING
            RETURNING id
            """,
            task_id,
            owner_id,
            name,
            params,
            digest,
            request_id,
        )
        if created is not None:
            return task_id, True
        existing = await connection.fetchval(
            """
            SELECT id FROM tasks
            WHERE owner_id IS NOT DISTINCT FROM $1 AND name = $2 AND params_hash = $3
              AND state = ANY($4::text[])
            """,
            owner_id,
            name,
            digest,
            list(ACTIVE_STATES),
        )
        if existing is not None:
            return existing, False
        # The duplicate finished between our insert and our select: try again.
    raise RuntimeError("could not record task submission")


async def get_status(
    connection: asyncpg.Connection, *, task_id: str, owner_id: int | None
) -> TaskStatus | None:
    """The task if it exists and belongs to `owner_id` (None: any owner, for admins)."""
    row = await connection.fetchrow(
        f"SELECT {_STATUS_COLUMNS} FROM tasks WHERE id = $1 "  # noqa: S608 - constant columns
        "AND ($2::bigint IS NULL OR owner_id = $2)",
        task_id,
        owner_id,
    )
    return None if row is None else status_from_row(row)


def _rfc3339(column: str) -> str:
    """SQL rendering timestamptz `column` as msgspec renders a UTC datetime (no fraction
    when it is whole seconds, else microseconds; `Z`)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE "
        f"WHEN extract(microseconds FROM {column})::bigint % 1000000 = 0 THEN '' "
        f"ELSE to_char({utc}, '.US') END || 'Z'"
    )


# `status_from_row` and msgspec's encoding of `TaskStatus`, in SQL: the fields in order,
# a progress without `message` gets "", an error without `type` or `message` gets "Error"
# and "", and an empty progress or error is null.
_STATUS_JSON = f"""json_build_object(
    'task_id', id, 'name', name, 'state', state,
    'progress', CASE WHEN jsonb_typeof(progress) = 'object' AND progress <> '{{}}' THEN
        json_build_object('current', progress -> 'current', 'total', progress -> 'total',
                          'message', coalesce(progress -> 'message', '""'))
        END,
    'result', result,
    'error', CASE WHEN jsonb_typeof(error) = 'object' AND error <> '{{}}' THEN
        json_build_object('type', coalesce(error -> 'type', '"Error"'),
                          'message', coalesce(error -> 'message', '""'))
        END,
    'submitted_at', {_rfc3339("submitted_at")},
    'started_at', {_rfc3339("started_at")},
    'finished_at', {_rfc3339("finished_at")}
)"""


def _listed(limit: str) -> str:
    """SQL: the tasks a list shows, newest first, at most `limit` (an expression) of them;
    the parameters are those of `list_args`."""
    return f"""
    SELECT id, name, state, progress, result, error, submitted_at, started_at, finished_at,
           xmin AS v
    FROM tasks
    WHERE ($1::bigint IS NULL OR owner_id = $1)
      AND (NOT $7::boolean OR owner_id IS NULL)
      AND ($2::text[] IS NULL OR state = ANY($2))
      AND ($3::text IS NULL OR name = $3)
      AND ($4::timestamptz IS NULL OR (submitted_at, id) < ($4, $5))
    ORDER BY submitted_at DESC, id DESC
    LIMIT {limit}
    """  # noqa: S608 - constant text


# A page is the first `limit` tasks; one more is read to know whether another page follows.
# Its version hashes the id and row version (`xmin`, new on every write) of each task read,
# so it moves when any of them changes, a task joins the page or one leaves it.
TASK_PAGE_VERSION = f"""
SELECT true AS listed,
       (SELECT md5(coalesce(string_agg(id || ':' || v::text, ','
                                       ORDER BY submitted_at DESC, id DESC), ''))
        FROM ({_listed("$6::int + 1")}) AS page) AS version
"""  # noqa: S608 - constant text
# `TaskPage` as msgspec encodes it; the cursor as `encode_cursor` writes it (the submit
# instant in microseconds since the epoch, then the id's UTF-8 in hex).
TASK_PAGE_BODY = f"""
WITH page AS ({_listed("$6::int + 1")}),
shown AS (SELECT * FROM page ORDER BY submitted_at DESC, id DESC LIMIT $6::int),
last AS (SELECT submitted_at, id FROM shown ORDER BY submitted_at, id LIMIT 1)
SELECT json_build_object(
    'tasks', (SELECT coalesce(json_agg({_STATUS_JSON} ORDER BY submitted_at DESC, id DESC),
                              '[]') FROM shown),
    'next_cursor', CASE WHEN (SELECT count(*) FROM page) > $6::int THEN (
        SELECT (extract(epoch FROM submitted_at) * 1000000)::bigint::text || '-'
               || encode(convert_to(id, 'UTF8'), 'hex')
        FROM last
    ) END
)::text
"""  # noqa: S608 - constant text
_ACTIVE = f"""
SELECT coalesce(json_agg({_STATUS_JSON} ORDER BY submitted_at DESC, id DESC), '[]')::text
FROM ({_listed("$6::int")}) AS listed
"""  # noqa: S608 - constant text


def list_args(
    *,
    owner_id: int | None,
    states: list[str] | None,
    name: str | None,
    limit: int,
    before: tuple[datetime, str] | None,
    ownerless: bool = False,
) -> tuple[object, ...]:
    """The parameters of `TASK_PAGE_VERSION` and `TASK_PAGE_BODY`: the tasks of `owner_id`,
    or with `ownerless` only the tasks no user owns (sent by the scheduler or fanned out by
    another task), newest first after the keyset cursor `before`, `limit` of them."""
    if ownerless and owner_id is not None:
        raise ValueError("ownerless lists the tasks of no owner; owner_id must be None")
    return (
        owner_id,
        tuple(states) if states is not None else None,  # hashable: a kept page's key
        name,
        before[0] if before else None,
        before[1] if before else None,
        limit,
        ownerless,
    )


async def active_statuses(connection: asyncpg.Connection, *, owner_id: int, limit: int) -> str:
    """The owner's unfinished tasks, newest first, as the JSON array of their `TaskStatus`.
    Postgres writes the JSON: decoding each task's result into Python objects and encoding
    it again cost more than the rest of the request."""
    args = list_args(
        owner_id=owner_id, states=list(ACTIVE_STATES), name=None, limit=limit, before=None
    )
    text: str = await connection.fetchval(_ACTIVE, *args)
    return text


async def mark_revoked_if_pending(connection: asyncpg.Connection, *, task_id: str) -> bool:
    """Finish a task that has not started yet as REVOKED; False if it already started."""
    status: str = await connection.execute(
        """
        UPDATE tasks SET state = 'REVOKED', finished_at = now(), updated_at = now(),
               cancel_requested_at = now(),
               error = '{"type": "Cancelled", "message": "cancelled before it started"}'
        WHERE id = $1 AND state = 'PENDING'
        """,
        task_id,
    )
    return status.endswith(" 1")


async def note_cancel_requested(connection: asyncpg.Connection, *, task_id: str) -> None:
    """Record that a running task was asked to stop."""
    await connection.execute(
        "UPDATE tasks SET cancel_requested_at = now(), updated_at = now() WHERE id = $1", task_id
    )


# --- worker side -----------------------------------------------------------------------


async def claim_run(
    connection: asyncpg.Connection,
    *,
    task_id: str,
    name: str,
    params: dict[str, Any],
    delivery: int,
    worker: str,
    stale_after: timedelta,
) -> bool:
    """Claim the right to run this copy of a task; False means drop the copy.

    A copy may run when the task is new, PENDING or RETRY, when it is a Celery retry
    (a higher `delivery` than the copy that ran before), or when the copy that was
    running stopped heartbeating. A finished task never runs again.
    """
    claimed = await connection.fetchval(
        """
        INSERT INTO tasks (id, name, params, params_hash, state, started_at, heartbeat_at,
                           attempts, delivery, worker)
        VALUES ($1, $2, $3, $4, 'STARTED', now(), now(), 1, $5, $6)
        ON CONFLICT (id) DO UPDATE SET
            state = 'STARTED', started_at = coalesce(tasks.started_at, now()),
            heartbeat_at = now(), attempts = tasks.attempts + 1, delivery = excluded.delivery,
            worker = excluded.worker, updated_at = now()
        WHERE tasks.state IN ('PENDING', 'RETRY')
           OR (tasks.state IN ('STARTED', 'PROGRESS')
               AND (excluded.delivery > tasks.delivery
                    OR tasks.heartbeat_at < now() - $7::interval))
        RETURNING id
        """,
        task_id,
        name,
        params,
        params_hash(name, params),
        delivery,
        worker,
        stale_after,
    )
    return claimed is not None


async def heartbeat(connection: asyncpg.Connection, *, task_id: str) -> None:
    """Say the running copy is alive."""
    await connection.execute(
        "UPDATE tasks SET heartbeat_at = now() WHERE id = $1 AND state IN ('STARTED', 'PROGRESS')",
        task_id,
    )


async def record_progress(
    connection: asyncpg.Connection, *, task_id: str, progress: Progress
) -> None:
    """Store progress (state PROGRESS) unless the task already finished."""
    await connection.execute(
        """
        UPDATE tasks SET state = 'PROGRESS', progress = $2, heartbeat_at = now(), updated_at = now()
        WHERE id = $1 AND state IN ('STARTED', 'PROGRESS')
        """,
        task_id,
        msgspec.to_builtins(progress),
    )


async def record_outcome(
    connection: asyncpg.Connection,
    *,
    task_id: str,
    state: Literal["SUCCESS", "FAILURE", "REVOKED"],
    result: Any = None,
    error: TaskError | None = None,
) -> None:
    """Finish a task; a finished task is never changed again."""
    await connection.execute(
        """
        UPDATE tasks SET state = $2, result = $3, error = $4, finished_at = now(),
               updated_at = now()
        WHERE id = $1 AND state <> ALL($5::text[])
        """,
        task_id,
        state,
        result,
        msgspec.to_builtins(error) if error else None,
        list(TERMINAL_STATES),
    )


async def sweep_lost_tasks(
    connection: asyncpg.Connection, *, stale_after: timedelta, lost_after: timedelta
) -> tuple[int, int]:
    """Running tasks whose worker went silent → RETRY; RETRY tasks never picked up again,
    or retried too often → FAILURE. Returns (marked_retry, marked_failed)."""
    retried: str = await connection.execute(
        """
        UPDATE tasks SET state = 'RETRY', updated_at = now(),
               error = jsonb_build_object('type', 'WorkerLost', 'message',
                   'the worker stopped responding; waiting for redelivery')
        WHERE state IN ('STARTED', 'PROGRESS') AND heartbeat_at < now() - $1::interval
        """,
        stale_after,
    )
    failed: str = await connection.execute(
        """
        UPDATE tasks SET state = 'FAILURE', finished_at = now(), updated_at = now(),
               error = jsonb_build_object('type', 'WorkerLost', 'message',
                   CASE WHEN attempts >= $1
                        THEN 'the task''s worker died on every attempt; retries spent'
                        ELSE 'the task''s worker died and no worker picked it up again' END)
        WHERE state = 'RETRY' AND (attempts >= $1 OR updated_at < now() - $2::interval)
        """,
        MAX_ATTEMPTS,
        lost_after,
    )
    return int(retried.rsplit(" ", 1)[-1]), int(failed.rsplit(" ", 1)[-1])


NEVER_STARTED_MESSAGE = "never started: no worker claimed it within {seconds} s"


async def fail_never_started(
    connection: asyncpg.Connection, *, lost_after: timedelta, now: datetime | None = None
) -> int:
    """PENDING tasks submitted more than `lost_after` before `now` (default: the database's
    clock) that no worker ever claimed → FAILURE, so an identical submit starts a new task.

    `lost_after` must outlast the broker's visibility timeout: a message delivered and not
    acknowledged comes back only after it. Returns how many tasks were ended."""
    status: str = await connection.execute(
        """
        UPDATE tasks SET state = 'FAILURE', finished_at = now(), updated_at = now(),
               error = jsonb_build_object('type', 'NeverStarted', 'message', $2::text)
        WHERE state = 'PENDING'
          AND submitted_at < coalesce($3::timestamptz, now()) - $1::interval
        """,
        lost_after,
        NEVER_STARTED_MESSAGE.format(seconds=int(lost_after.total_seconds())),
        now,
    )
    return int(status.rsplit(" ", 1)[-1])


UNKNOWN_TASK_MESSAGE = "refused: no worker defines a task named {name!r}"


async def fail_unknown_task(connection: asyncpg.Connection, *, task_id: str, name: str) -> bool:
    """A PENDING task `name` whose message a worker refused (it defines no such task) →
    FAILURE saying so, so its submitter learns why and an identical submit starts anew.

    Returns whether a row was ended; a row of another name, or already claimed, is left be."""
    status: str = await connection.execute(
        """
        UPDATE tasks SET state = 'FAILURE', finished_at = now(), updated_at = now(),
               error = jsonb_build_object('type', 'UnknownTask', 'message', $3::text)
        WHERE id = $1 AND name = $2 AND state = 'PENDING'
        """,
        task_id,
        name,
        UNKNOWN_TASK_MESSAGE.format(name=name),
    )
    return status.endswith(" 1")
