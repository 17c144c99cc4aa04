"""Nothing stays PENDING for ever: a task whose message was lost ends FAILURE "never started"
so its twin can run, and a claim that fails on Postgres is retried (issue 11, item 5)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from service.core import task_registry
from service.core.celery_config import create_publisher_app
from service.core.settings import Settings
from service.core.users import IssuedKey
from tests.processes import ManagedProcess, serve_api

pytestmark = pytest.mark.usefixtures("worker")
NewUser = Callable[..., Awaitable[IssuedKey]]
# A broker database no worker consumes: what is published there is never delivered.
DEAD_BROKER_DB = 12


async def _submit(
    http: aiohttp.ClientSession, api: str, key: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{api}/api/v1/tasks/market-data", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        return response.status, dict(await response.json())


async def _wait_state(pool: asyncpg.Pool, task_id: str, states: set[str], within: float) -> str:
    deadline = time.monotonic() + within
    state = await pool.fetchval("SELECT state FROM tasks WHERE id = $1", task_id)
    while state not in states and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        state = await pool.fetchval("SELECT state FROM tasks WHERE id = $1", task_id)
    return str(state)


class TestNeverStarted:
    async def test_lost_message_ends_never_started_and_its_twin_runs(
        self,
        base_env: dict[str, str],
        api_url: str,
        scratch_dir: Path,
        settings: Settings,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        pool: asyncpg.Pool,
    ) -> None:
        """A submitted task whose broker message is lost stays PENDING (its twin gets
        "existing") until the sweep, past the visibility timeout plus grace on an injected
        clock, ends it FAILURE "never started"; the identical resubmit then runs."""
        user = await new_user()
        body = {"symbols": [f"LOST{uuid.uuid4().hex[:6].upper()}"], "period": "1mo"}
        dead_broker = base_env["REDIS_URL"].rsplit("/", 1)[0] + f"/{DEAD_BROKER_DB}"
        env = {**base_env, "CELERY_BROKER_URL": dead_broker}
        with serve_api(env, log_path=scratch_dir / "dead-broker-api.log") as (dead_api, _):
            status, answer = await _submit(http, dead_api, user.api_key, body)
        assert status == 202, answer
        lost_id = answer["task_id"]
        broker = aioredis.Redis.from_url(dead_broker)
        try:
            assert await broker.llen("market_data") == 1  # it was published...
            await broker.delete("market_data")  # ...and is lost
        finally:
            await broker.aclose()

        status, twin = await _submit(http, api_url, user.api_key, body)
        assert (status, twin) == (200, {"task_id": lost_id, "status": "existing"})

        lost_after = timedelta(seconds=settings.task_lost_after_seconds)
        submitted_at = await pool.fetchval("SELECT submitted_at FROM tasks WHERE id = $1", lost_id)
        async with pool.acquire() as connection:
            await task_registry.fail_never_started(
                connection, lost_after=lost_after, now=submitted_at + lost_after
            )
            still = await connection.fetchval("SELECT state FROM tasks WHERE id = $1", lost_id)
            ended = await task_registry.fail_never_started(
                connection,
                lost_after=lost_after,
                now=submitted_at + lost_after + timedelta(seconds=1),
            )
            lost = await task_registry.get_status(connection, task_id=lost_id, owner_id=None)
        assert still == "PENDING"  # not before the visibility timeout plus grace
        assert ended >= 1
        assert lost is not None
        assert lost.state == "FAILURE"
        seconds = settings.task_lost_after_seconds
        assert lost.error == task_registry.TaskError(
            type="NeverStarted", message=f"never started: no worker claimed it within {seconds} s"
        )

        status, fresh = await _submit(http, api_url, user.api_key, body)
        assert status == 202, fresh
        assert fresh["task_id"] != lost_id
        assert await _wait_state(pool, fresh["task_id"], {"SUCCESS", "FAILURE"}, 60) == "SUCCESS"


class TestClaimRetried:
    async def test_claim_blocked_by_a_row_lock_is_retried_and_runs(
        self, worker: ManagedProcess, settings: Settings, pool: asyncpg.Pool
    ) -> None:
        """A claim that fails on Postgres (its registry row locked past the claim's lock
        timeout) is not acknowledged as done: the message is retried and the task runs."""
        task_id = str(uuid.uuid4())
        symbol = f"CLAIM{uuid.uuid4().hex[:6].upper()}"
        async with pool.acquire() as connection:
            await task_registry.record_submission(
                connection,
                task_id=task_id,
                owner_id=None,
                name="demo_fetch",
                params={"symbol": symbol},
                request_id=None,
            )
        publisher = create_publisher_app(settings)
        try:
            async with pool.acquire() as holder, holder.transaction():
                await holder.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task_id)
                publisher.send_task(
                    "demo_fetch", kwargs={"symbol": symbol}, task_id=task_id, queue="market_data"
                )
                deadline = time.monotonic() + 20
                while not _claim_failed(worker, task_id):
                    assert time.monotonic() < deadline, worker.log_tail()
                    await asyncio.sleep(0.1)
        finally:
            publisher.close()
        assert await _wait_state(pool, task_id, {"SUCCESS", "FAILURE"}, 30) == "SUCCESS"
        row = await pool.fetchrow("SELECT delivery, attempts FROM tasks WHERE id = $1", task_id)
        stored = await pool.fetchval("SELECT count(*) FROM daily_prices WHERE symbol = $1", symbol)
        assert row["delivery"] >= 1, dict(row)  # the run was a retried copy
        assert row["attempts"] == 1, dict(row)  # the failed claim left no trace
        assert stored > 15


def _claim_failed(worker: ManagedProcess, task_id: str) -> bool:
    return any(
        line.get("task_id") == task_id and str(line.get("event", "")).startswith("claim failed")
        for line in worker.json_lines()
    )
