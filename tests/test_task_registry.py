"""The task registry with real workers: forward-only states, duplicate copies dropped,
worker deaths turned into RETRY and, when nothing recovers them, FAILURE."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from celery import Celery

from service.core import task_registry
from service.core.celery_config import create_celery_app
from service.core.contracts import FetchMarketData
from service.core.settings import Settings
from service.dev.embedded import EmbeddedRedis
from service.scheduler import create_publisher
from tests.conftest import start_worker
from tests.faults import assert_stored_equals_served, fresh_symbols, wait_final, wait_state
from tests.processes import ManagedProcess


async def _wait_state(pool: asyncpg.Pool, task_id: str, states: set[str], within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        state = await pool.fetchval("SELECT state FROM tasks WHERE id = $1", task_id)
        if state in states or time.monotonic() > deadline:
            return str(state)
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def celery_client(settings: Settings) -> Iterator[Celery]:
    app = create_celery_app(settings)
    yield app
    app.close()


class TestForwardOnly:
    async def test_finished_task_never_changes(self, pool: asyncpg.Pool) -> None:
        """After SUCCESS, progress, claims and other outcomes leave the row as it was."""
        task_id = str(uuid.uuid4())
        async with pool.acquire() as db:
            assert await task_registry.claim_run(
                db,
                task_id=task_id,
                name="demo_fetch",
                params={},
                delivery=0,
                worker="w",
                stale_after=timedelta(seconds=30),
            )
            await task_registry.record_outcome(
                db, task_id=task_id, state="SUCCESS", result={"a": 1}
            )
            await task_registry.record_progress(
                db, task_id=task_id, progress=task_registry.Progress(current=1, total=2)
            )
            await task_registry.record_outcome(db, task_id=task_id, state="FAILURE")
            claimed_again = await task_registry.claim_run(
                db,
                task_id=task_id,
                name="demo_fetch",
                params={},
                delivery=5,
                worker="w",
                stale_after=timedelta(seconds=0),
            )
            row = await db.fetchrow(
                "SELECT state, result, attempts FROM tasks WHERE id = $1", task_id
            )
        assert claimed_again is False
        assert (row["state"], row["result"], row["attempts"]) == ("SUCCESS", {"a": 1}, 1)

    async def test_running_copy_blocks_a_second_copy(self, pool: asyncpg.Pool) -> None:
        """A second copy with the same delivery is refused while the first heartbeats."""
        task_id = str(uuid.uuid4())
        async with pool.acquire() as db:

            async def claim(delivery: int) -> bool:
                return await task_registry.claim_run(
                    db,
                    task_id=task_id,
                    name="demo_fetch",
                    params={},
                    worker="w",
                    delivery=delivery,
                    stale_after=timedelta(seconds=30),
                )

            assert await claim(0)
            assert not await claim(0)
            assert await claim(1)


@pytest.mark.usefixtures("worker")
class TestDuplicateDelivery:
    async def test_task_id_sent_twice_runs_once(
        self, celery_client: Celery, pool: asyncpg.Pool
    ) -> None:
        """Sending a finished task's id again does not run it again."""
        task_id = f"fire-{uuid.uuid4()}"
        celery_client.send_task("demo_fetch", kwargs={"symbol": "TWICE"}, task_id=task_id)
        assert await _wait_state(pool, task_id, {"SUCCESS"}, 30) == "SUCCESS"
        first = await pool.fetchrow(
            "SELECT finished_at, attempts FROM tasks WHERE id = $1", task_id
        )
        celery_client.send_task("demo_fetch", kwargs={"symbol": "TWICE"}, task_id=task_id)
        await asyncio.sleep(2)
        second = await pool.fetchrow(
            "SELECT finished_at, attempts FROM tasks WHERE id = $1", task_id
        )
        assert first == second
        assert second["attempts"] == 1


@pytest.mark.usefixtures("exchange")
class TestWorkerDeath:
    async def test_killed_child_is_retried_and_finishes(
        self, base_env: dict[str, str], scratch_dir: Path, pool: asyncpg.Pool
    ) -> None:
        """A prefork child killed mid-task: Celery redelivers, the registry shows one run
        that finished, with two attempts."""
        broker = EmbeddedRedis(scratch_dir / "child-kill-redis")
        broker.start()
        env = {**base_env, "CELERY_BROKER_URL": broker.url, "CELERY_RESULT_BACKEND": broker.url}
        worker = start_worker(env, log_path=scratch_dir / "child-kill-worker.log", name="childkill")
        app = create_celery_app(Settings.from_env(env))
        try:
            task_id = str(uuid.uuid4())
            app.send_task(
                "demo_fetch", kwargs={"symbol": "KILLME", "hold_seconds": 3}, task_id=task_id
            )
            assert await _wait_state(pool, task_id, {"PROGRESS"}, 30) == "PROGRESS"
            running_in = await pool.fetchval("SELECT worker FROM tasks WHERE id = $1", task_id)
            os.kill(int(running_in.rsplit(":", 1)[1]), signal.SIGKILL)
            assert await _wait_state(pool, task_id, {"SUCCESS", "FAILURE"}, 45) == "SUCCESS"
            attempts = await pool.fetchval("SELECT attempts FROM tasks WHERE id = $1", task_id)
            assert attempts == 2
        finally:
            app.close()
            worker.stop()
            broker.stop()

    @pytest.mark.timeout(240)
    async def test_killed_worker_mid_fetch_is_redelivered_to_the_other(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        pool: asyncpg.Pool,
        exchange: str,
        http: aiohttp.ClientSession,
    ) -> None:
        """A whole worker SIGKILLed in the middle of a 300-symbol fetch, a second worker
        running: the message is redelivered after the visibility timeout, the other worker
        finishes it, the registry records a second attempt, and the stored bars equal the
        exchange's ledger with no duplicates."""
        broker = EmbeddedRedis(scratch_dir / "kill9-redis")
        broker.start()
        env = {
            **base_env,
            "REDIS_URL": broker.url,
            "CELERY_BROKER_URL": broker.url,
            "CELERY_RESULT_BACKEND": broker.url,
            "CELERY_TASK_TIME_LIMIT": "40",
            "CELERY_VISIBILITY_TIMEOUT": "45",
            "CELERY_UNACKED_RESTORE_SECONDS": "1",
            "YAHOO_RATE_LIMIT": "30/second",
        }
        workers = {
            name: start_worker(env, log_path=scratch_dir / f"{name}.log", name=name)
            for name in ("killa", "killb")
        }
        publisher = create_publisher(Settings.from_env(env))
        try:
            symbols = fresh_symbols("K", 300)
            task_id = str(uuid.uuid4())
            await publisher.publish(FetchMarketData(symbols=symbols), task_id=task_id)
            assert await wait_state(pool, task_id, "PROGRESS", within=60)
            running_in = await pool.fetchval("SELECT worker FROM tasks WHERE id = $1", task_id)
            doomed = next(name for name in workers if running_in.startswith(f"{name}@"))
            survivor = next(name for name in workers if name != doomed)
            workers[doomed].signal_group(signal.SIGKILL)
            killed = time.monotonic()
            states = await wait_final(pool, [task_id], within=150)
            recovered = time.monotonic() - killed
            assert states == {task_id: "SUCCESS"}, workers[survivor].log_tail(6000)
            row = await pool.fetchrow("SELECT attempts, worker FROM tasks WHERE id = $1", task_id)
            assert row["attempts"] == 2
            assert row["worker"].startswith(f"{survivor}@")
            bars = await assert_stored_equals_served(pool, http, exchange, symbols)
            print(  # noqa: T201 - the measured figures, shown with -s
                f"worker kill -9: SUCCESS on {survivor} {recovered:.1f} s after the kill "
                f"(visibility timeout 45 s), attempts 2, {bars} bars = ledger, 0 duplicates"
            )
        finally:
            publisher.close()
            for process in workers.values():
                process.stop()
            broker.stop()

    async def test_dead_worker_goes_retry_then_failure(
        self, base_env: dict[str, str], scratch_dir: Path, pool: asyncpg.Pool
    ) -> None:
        """A whole worker SIGKILLed: the sweep marks its task RETRY once the heartbeat is
        stale, then FAILURE with a reason when no worker picks it up."""
        broker = EmbeddedRedis(scratch_dir / "dead-worker-redis")
        broker.start()
        env = {**base_env, "CELERY_BROKER_URL": broker.url, "CELERY_RESULT_BACKEND": broker.url}
        worker: ManagedProcess = start_worker(
            env, log_path=scratch_dir / "dead-worker.log", name="doomed"
        )
        app = create_celery_app(Settings.from_env(env))
        try:
            task_id = str(uuid.uuid4())
            app.send_task(
                "demo_fetch", kwargs={"symbol": "DOOMED", "hold_seconds": 60}, task_id=task_id
            )
            assert await _wait_state(pool, task_id, {"PROGRESS"}, 30) == "PROGRESS"
            worker.signal_group(signal.SIGKILL)
            await asyncio.sleep(3.5)
            async with pool.acquire() as db:
                marked = await task_registry.sweep_lost_tasks(
                    db, stale_after=timedelta(seconds=3), lost_after=timedelta(hours=1)
                )
                assert marked[0] >= 1
                assert (
                    await db.fetchval("SELECT state FROM tasks WHERE id = $1", task_id) == "RETRY"
                )
                await task_registry.sweep_lost_tasks(
                    db, stale_after=timedelta(seconds=3), lost_after=timedelta(seconds=0)
                )
                row = await db.fetchrow(
                    "SELECT state, error, finished_at FROM tasks WHERE id = $1", task_id
                )
            assert row["state"] == "FAILURE"
            assert row["error"]["type"] == "WorkerLost"
            assert "no worker picked it up" in row["error"]["message"]
            assert row["finished_at"] is not None
        finally:
            app.close()
            worker.stop()
            broker.stop()
