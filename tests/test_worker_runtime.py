"""A real prefork worker runs async task bodies on one loop per process, shared I/O,
cooperative cancellation, and JSON logs carrying task and request ids."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from celery import Celery
from celery.result import AsyncResult

from service.core import task_registry
from service.core.cancellation import request_cancel
from service.core.celery_config import create_celery_app, create_publisher_app
from service.core.settings import Settings
from service.dev.embedded import free_port
from tests.conftest import start_worker
from tests.processes import ManagedProcess, wait_for


@pytest.fixture(scope="module")
def celery_client(settings: Settings) -> Iterator[Celery]:
    """A publishing-only Celery app, as the API uses."""
    app = create_celery_app(settings)
    yield app
    app.close()


def _state(result: AsyncResult) -> str:
    return str(result.state)


class TestAsyncRuntime:
    async def test_demo_task_fetches_and_writes(
        self, worker: ManagedProcess, celery_client: Celery, pool: asyncpg.Pool
    ) -> None:
        """The demo task fetches a chart from the simulated exchange and stores its bars."""
        result = celery_client.send_task("demo_fetch", kwargs={"symbol": "DEMOA"})
        outcome: dict[str, Any] = result.get(timeout=30)
        stored = await pool.fetchval("SELECT count(*) FROM daily_prices WHERE symbol = 'DEMOA'")
        assert outcome["bars"] > 15
        assert stored == outcome["bars"]

    def test_tasks_in_one_process_share_session_and_pool(
        self, worker: ManagedProcess, celery_client: Celery
    ) -> None:
        """Every task a worker process runs reuses that process's one session and one pool."""
        results = [
            celery_client.send_task("demo_fetch", kwargs={"symbol": f"SHARE{i}"}) for i in range(8)
        ]
        outcomes = [r.get(timeout=30) for r in results]
        by_pid: dict[int, set[tuple[int, int]]] = {}
        for outcome in outcomes:
            by_pid.setdefault(outcome["pid"], set()).add(
                (outcome["session_id"], outcome["pool_id"])
            )
        assert all(len(ids) == 1 for ids in by_pid.values()), by_pid
        # 8 tasks on 2 child processes: some process ran several, so the sharing is real.
        assert max(sum(1 for o in outcomes if o["pid"] == pid) for pid in by_pid) >= 2

    async def test_running_task_stops_within_two_seconds(
        self, worker: ManagedProcess, celery_client: Celery, redis_client: aioredis.Redis
    ) -> None:
        """A running task told to stop is cancelled and ends REVOKED within 2 s."""
        result = celery_client.send_task(
            "demo_fetch", kwargs={"symbol": "HOLD", "hold_seconds": 60}
        )
        assert wait_for(lambda: _state(result) == "PROGRESS", timeout=20)
        asked = time.monotonic()
        await request_cancel(redis_client, result.id)
        assert wait_for(lambda: _state(result) == "REVOKED", timeout=2.5)
        assert time.monotonic() - asked < 2.0

    def test_progress_is_reported(self, worker: ManagedProcess, celery_client: Celery) -> None:
        """A task's PROGRESS meta carries current, total and message."""
        result = celery_client.send_task(
            "demo_fetch", kwargs={"symbol": "PROG", "hold_seconds": 1.5}
        )
        assert wait_for(lambda: _state(result) == "PROGRESS", timeout=20)
        info = result.info
        assert set(info) == {"current", "total", "message"}
        assert info["total"] == 15
        result.get(timeout=20)

    def test_worker_logs_are_json_with_ids(
        self, worker: ManagedProcess, celery_client: Celery
    ) -> None:
        """Every worker line is JSON; the task's own lines carry its task_id and request_id."""
        result = celery_client.send_task(
            "demo_fetch", kwargs={"symbol": "LOGS"}, headers={"request_id": "req-logs-1"}
        )
        result.get(timeout=30)
        assert wait_for(
            lambda: any(
                line.get("task_id") == result.id and line.get("event") == "demo bars stored"
                for line in worker.json_lines()
            ),
            timeout=5,
        )
        lines = worker.json_lines()  # raises if any line is not JSON
        own = [line for line in lines if line.get("task_id") == result.id]
        assert own
        assert all(line.get("request_id") == "req-logs-1" for line in own)
        assert all(line["service"] == "worker" for line in lines)


class TestDeadline:
    async def test_task_past_its_time_limit_ends_failure_in_the_registry(
        self, base_env: dict[str, str], exchange: str, scratch_dir: Path, pool: asyncpg.Pool
    ) -> None:
        """A body still running at Celery's soft time limit ends FAILURE in the registry
        at once, rather than staying "running" until the lost-task sweep."""
        # A broker of its own (another Redis database), so the session worker cannot take it.
        env = {
            **base_env,
            "REDIS_URL": base_env["REDIS_URL"].rsplit("/", 1)[0] + "/5",
            "CELERY_TASK_TIME_LIMIT": "8",  # soft limit 3 s
        }
        process = start_worker(env, log_path=scratch_dir / "deadline-worker.log", name="deadline")
        app = create_celery_app(Settings.from_env(env))
        try:
            result = app.send_task("demo_fetch", kwargs={"symbol": "SLOW", "hold_seconds": 30})
            status = None
            for _ in range(200):  # at most 20 s, far below the 30 s hold
                async with pool.acquire() as connection:
                    status = await task_registry.get_status(
                        connection, task_id=result.id, owner_id=None
                    )
                if status is not None and status.state in task_registry.TERMINAL_STATES:
                    break
                await asyncio.sleep(0.1)
            assert status is not None
            assert status.state == "FAILURE", status
            assert status.error is not None
            assert "deadline" in status.error.message
        finally:
            app.close()
            process.stop()


class TestAdvisoryProgress:
    async def test_result_backend_down_does_not_fail_the_task(
        self, base_env: dict[str, str], exchange: str, scratch_dir: Path, pool: asyncpg.Pool
    ) -> None:
        """With Celery's result backend unreachable, progress still lands in the registry and
        the task still succeeds there: progress is advisory, the registry is the truth."""
        broker = base_env["REDIS_URL"].rsplit("/", 1)[0] + "/6"
        env = {
            **base_env,
            "CELERY_BROKER_URL": broker,
            "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{free_port()}/0",
        }
        process = start_worker(
            env, log_path=scratch_dir / "no-backend-worker.log", name="nobackend"
        )
        app = create_publisher_app(Settings.from_env(env))
        try:
            task_id = str(uuid.uuid4())
            app.send_task(
                "demo_fetch", kwargs={"symbol": "NOBACKEND", "hold_seconds": 1}, task_id=task_id
            )
            row = None
            for _ in range(300):  # at most 30 s
                row = await pool.fetchrow(
                    "SELECT state, progress FROM tasks WHERE id = $1", task_id
                )
                if row is not None and row["state"] in task_registry.TERMINAL_STATES:
                    break
                await asyncio.sleep(0.1)
            assert row is not None
            assert row["state"] == "SUCCESS"
            assert row["progress"] == {"current": 10, "total": 10, "message": "holding"}
        finally:
            app.close()
            process.stop()


class TestJsonOnly:
    async def test_pickled_message_is_refused(
        self, worker: ManagedProcess, settings: Settings, pool: asyncpg.Pool
    ) -> None:
        """A pickle-serialised message (code execution on load) is refused unread and never
        runs, while the JSON message sent after it does."""
        sender = create_celery_app(settings)
        sender.conf.accept_content = ["json", "pickle"]
        try:
            pickled = sender.send_task(
                "demo_fetch", kwargs={"symbol": "PICKLED"}, serializer="pickle"
            )
            after = sender.send_task("demo_fetch", kwargs={"symbol": "AFTERPICKLE"})
            after.get(timeout=30)
        finally:
            sender.close()
        assert wait_for(
            lambda: any(
                "untrusted content" in str(line.get("event")) for line in worker.json_lines()
            ),
            timeout=10,
        )
        ran = await pool.fetchval("SELECT count(*) FROM tasks WHERE id = $1", pickled.id)
        stored = await pool.fetchval("SELECT count(*) FROM daily_prices WHERE symbol = 'PICKLED'")
        assert (ran, stored) == (0, 0)
