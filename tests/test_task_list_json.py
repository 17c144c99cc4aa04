"""The task list Postgres writes as JSON says what `status_from_row` and msgspec say about
each task, on awkward rows: defaults filled in, empty objects null, timestamps with and
without a fraction, pages cut at the cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest

from service.core import task_registry
from service.core.users import create_user

SUBMITTED = datetime(2026, 3, 8, 7, 0, 0, tzinfo=UTC)

ROWS: list[dict[str, Any]] = [
    {"state": "PENDING", "progress": None, "result": None, "error": None},
    {"state": "PROGRESS", "progress": {"current": 3, "total": 9}, "started_us": 120},
    {"state": "PROGRESS", "progress": {"current": 0, "total": 1, "message": 'ünïcode "q"'}},
    {"state": "PROGRESS", "progress": {}, "started_us": 999_999},
    {"state": "SUCCESS", "result": {"b": [1, 2.5, None], "a": {"nested": "x"}}, "done": True},
    {"state": "SUCCESS", "result": [], "done": True},
    {"state": "SUCCESS", "result": "text", "done": True},
    {"state": "FAILURE", "error": {"message": "boom"}, "done": True},
    {"state": "FAILURE", "error": {"type": "ProviderError"}, "done": True},
    {"state": "FAILURE", "error": {}, "done": True},
    {"state": "REVOKED", "error": {"type": "Cancelled", "message": "c", "extra": 1}, "done": True},
]


async def _insert(connection: asyncpg.Connection, owner_id: int) -> None:
    for i, row in enumerate(ROWS):
        submitted = SUBMITTED.replace(second=i, microsecond=(i * 7919) % 1_000_000 if i else 0)
        began = submitted.replace(microsecond=row.get("started_us", 0))
        started = began if "started_us" in row or row.get("done") else None
        finished = began.replace(minute=5) if row.get("done") else None
        await connection.execute(
            "INSERT INTO tasks (id, owner_id, name, params_hash, state, progress, result, error,"
            " submitted_at, started_at, finished_at) VALUES ($1, $2, 'demo_fetch', $1, $3, $4,"
            " $5, $6, $7, $8, $9)",
            str(uuid.uuid4()),
            owner_id,
            row["state"],
            row.get("progress"),
            row.get("result"),
            row.get("error"),
            submitted,
            started,
            finished,
        )


@pytest.mark.parametrize("limit", [1, 4, 50])
async def test_pages_equal_the_python_encoding(pool: asyncpg.Pool, limit: int) -> None:
    """Every page (cut at `limit`, followed by its cursor) decodes to exactly what msgspec
    encodes from `status_from_row` of the same rows, and its timestamps are the same text."""
    async with pool.acquire() as connection:
        user = await create_user(connection, email=f"{uuid.uuid4().hex[:8]}@list.test")
        await _insert(connection, user.user_id)
        expected = [
            msgspec.json.encode(task_registry.status_from_row(row))
            for row in await connection.fetch(
                "SELECT * FROM tasks WHERE owner_id = $1 ORDER BY submitted_at DESC, id DESC",
                user.user_id,
            )
        ]
        listed: list[Any] = []
        before = None
        for _ in range(len(ROWS)):
            page = await task_registry.list_statuses(
                connection,
                owner_id=user.user_id,
                states=None,
                name=None,
                limit=limit,
                before=before,
            )
            tasks = msgspec.json.decode(page.tasks_json)
            assert len(tasks) == min(limit, len(ROWS) - len(listed))
            listed.extend(tasks)
            if page.next_after is None:
                break
            assert page.next_after[1] == tasks[-1]["task_id"]
            before = page.next_after
    assert listed == [msgspec.json.decode(e) for e in expected]
    assert [msgspec.json.encode(t) for t in listed] == expected
