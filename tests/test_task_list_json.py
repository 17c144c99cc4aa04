"""The task list Postgres writes as JSON says what `status_from_row` and msgspec say about
each task, on awkward rows: defaults filled in, empty objects null, timestamps with and
without a fraction, pages cut at the cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from service.api.tasks import decode_cursor, encode_cursor
from service.core import task_registry
from service.core.users import create_user
from tests.api_client import Api

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
    encodes from `status_from_row` of the same rows, its timestamps are the same text, and
    its cursor is `encode_cursor` of its last task."""
    async with pool.acquire() as connection:
        user = await create_user(connection, email=f"{uuid.uuid4().hex[:8]}@list.test")
        await _insert(connection, user.user_id)
        rows = await connection.fetch(
            "SELECT * FROM tasks WHERE owner_id = $1 ORDER BY submitted_at DESC, id DESC",
            user.user_id,
        )
        expected = [msgspec.json.encode(task_registry.status_from_row(row)) for row in rows]
        listed: list[Any] = []
        cursor = None
        for _ in range(len(ROWS)):
            args = task_registry.list_args(
                owner_id=user.user_id,
                states=None,
                name=None,
                limit=limit,
                before=decode_cursor(cursor) if cursor else None,
            )
            page = msgspec.json.decode(
                await connection.fetchval(task_registry.TASK_PAGE_BODY, *args)
            )
            assert len(page["tasks"]) == min(limit, len(ROWS) - len(listed))
            listed.extend(page["tasks"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            last = rows[len(listed) - 1]
            assert cursor == encode_cursor(submitted_at=last["submitted_at"], task_id=last["id"])
        active = msgspec.json.decode(
            await task_registry.active_statuses(connection, owner_id=user.user_id, limit=500)
        )
    assert listed == [msgspec.json.decode(e) for e in expected]
    assert [msgspec.json.encode(t) for t in listed] == expected
    assert active == [t for t in listed if t["state"] in task_registry.ACTIVE_STATES]


async def test_a_polled_list_is_304_until_a_task_on_it_changes(
    pool: asyncpg.Pool, api_url: str, http: aiohttp.ClientSession
) -> None:
    """The task list carries an ETag; sent back it gets 304 until a task on the page moves
    (its progress here) or a new one is submitted, and the next answer shows the change.
    Another user's identical request never gets this user's kept page."""
    async with pool.acquire() as connection:
        owner = await create_user(connection, email=f"{uuid.uuid4().hex[:8]}@list.test")
        other = await create_user(connection, email=f"{uuid.uuid4().hex[:8]}@list.test")
        await _insert(connection, owner.user_id)
    api, stranger = Api(http, api_url, owner.api_key), Api(http, api_url, other.api_key)
    path = "/api/v1/tasks?limit=4"
    status, first, headers = await api.request("GET", path)
    assert status == 200
    etag = headers["ETag"]
    assert headers["Cache-Control"] == "private, no-cache"
    assert (await api.request("GET", path, headers={"If-None-Match": etag}))[0] == 304
    assert (await stranger.request("GET", path))[1] == {"tasks": [], "next_cursor": None}
    moving = first["tasks"][2]
    await pool.execute(
        """UPDATE tasks SET progress = '{"current": 8, "total": 9}' WHERE id = $1""",
        moving["task_id"],
    )
    status, after, headers = await api.request("GET", path, headers={"If-None-Match": etag})
    assert status == 200
    assert {t["task_id"]: t["progress"] for t in after["tasks"]}[moving["task_id"]] == {
        "current": 8,
        "total": 9,
        "message": "",
    }
    async with pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO tasks (id, owner_id, name, params_hash, submitted_at) "
            "VALUES ($1, $2, 'demo_fetch', $1, $3)",
            str(uuid.uuid4()),
            owner.user_id,
            SUBMITTED.replace(minute=30),
        )
    status, newest, _ = await api.request("GET", path, headers={"If-None-Match": headers["ETag"]})
    assert status == 200
    assert newest["tasks"][0]["submitted_at"] == "2026-03-08T07:30:00Z"
    assert newest["tasks"][1:] == after["tasks"][:3]
