"""Redis restarted under load: the API answers 503 problems while it is down, workers and
the API reconnect on their own, and every task in flight or submitted after the restart
ends SUCCESS with exactly the bars the exchange served (docs/RELIABILITY.md)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service.core.contracts import FetchMarketData
from service.core.settings import Settings
from service.core.users import IssuedKey
from service.dev.embedded import EmbeddedRedis
from service.scheduler import create_publisher
from tests.api_client import Api
from tests.conftest import start_worker
from tests.faults import assert_stored_equals_served, fresh_symbols, wait_final, wait_state
from tests.processes import serve_api

OUTAGE_SECONDS = 10.0
NewUser = Callable[..., Awaitable[IssuedKey]]


@pytest.fixture
async def slow_exchange(exchange: str, http: aiohttp.ClientSession) -> AsyncIterator[str]:
    """The session exchange answering each request in about 0.3 s, so a 200-symbol fetch
    lasts long enough to straddle the outage; defaults restored afterwards."""
    async with http.put(f"{exchange}/_sim/config", json={"latency_ms": 300}) as response:
        assert response.status == 200
    yield exchange
    async with http.put(f"{exchange}/_sim/config", json={}) as response:
        assert response.status == 200


class TestRedisRestart:
    @pytest.mark.timeout(240)
    async def test_restart_mid_run_loses_nothing(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        slow_exchange: str,
        new_user: NewUser,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
    ) -> None:
        """Redis stopped for 10 s while fetches run and wait in the queue, then restarted:
        the API answers 503 problems within 2 s meanwhile and /ready names redis; afterwards
        every task, in flight, queued or submitted just after (through the API and through
        the scheduler's publisher), ends SUCCESS with the bars served."""
        redis = EmbeddedRedis(scratch_dir / "restart-redis", persistent=True)
        redis.start()
        env = {
            **base_env,
            "REDIS_URL": redis.url,
            "CELERY_BROKER_URL": redis.url,
            "CELERY_RESULT_BACKEND": redis.url,
        }
        worker = start_worker(env, log_path=scratch_dir / "restart-worker.log", name="restart")
        scheduler_publisher = create_publisher(Settings.from_env(env))
        try:
            with serve_api(env, log_path=scratch_dir / "restart-api.log") as (url, _):
                api = Api(http, url, (await new_user()).api_key)
                before = [
                    fresh_symbols("RB", 200),
                    fresh_symbols("RQ", 60),
                    fresh_symbols("RR", 60),
                ]
                in_flight: list[str] = []
                for symbols in before:
                    status, answer = await api.submit("market-data", {"symbols": symbols})
                    assert status == 202, answer
                    in_flight.append(answer["task_id"])
                # The scheduler's publisher sends once before the outage, so its pooled
                # connection is stale afterwards.
                scheduled_symbols = [fresh_symbols("RS", 10), fresh_symbols("RT", 10)]
                scheduled = [str(uuid.uuid4()), str(uuid.uuid4())]
                await scheduler_publisher.publish(
                    FetchMarketData(symbols=scheduled_symbols[0]), task_id=scheduled[0]
                )
                in_flight.append(scheduled[0])
                assert await wait_state(pool, in_flight[0], "PROGRESS", within=60)

                redis.stop()
                stopped = time.monotonic()
                submit_times, ready_times = [], []
                while time.monotonic() - stopped < OUTAGE_SECONDS:
                    started = time.monotonic()
                    status, problem = await api.submit("market-data", {"symbols": ["AAPL"]})
                    submit_times.append(time.monotonic() - started)
                    assert status == 503, problem
                    assert problem["status"] == 503
                    started = time.monotonic()
                    async with http.get(f"{url}/ready") as response:
                        ready = await response.json()
                        ready_times.append(time.monotonic() - started)
                        assert response.status == 503
                    assert ready["down"] == ["redis"]
                    await asyncio.sleep(0.5)
                assert max(submit_times) < 2.0, submit_times
                assert max(ready_times) < 2.0, ready_times
                failed = await pool.fetch(
                    "SELECT id, error FROM tasks WHERE id = ANY($1::text[]) AND state = 'FAILURE'",
                    in_flight,
                )
                assert not failed, [dict(row) for row in failed]

                redis.start()
                restarted = time.monotonic()
                after_symbols = [fresh_symbols("RA", 10) for _ in range(4)]
                after: list[str] = []
                for symbols in after_symbols:
                    status, answer = await api.submit("market-data", {"symbols": symbols})
                    assert status == 202, answer
                    after.append(answer["task_id"])
                accepted = time.monotonic() - restarted
                await scheduler_publisher.publish(
                    FetchMarketData(symbols=scheduled_symbols[1]), task_id=scheduled[1]
                )
                after.append(scheduled[1])
                states = await wait_final(pool, [*in_flight, *after], within=120)
                recovered = time.monotonic() - restarted
                assert set(states.values()) == {"SUCCESS"}, (states, worker.log_tail(6000))
                rows = 0
                for symbols in [*before, *after_symbols, *scheduled_symbols]:
                    rows += await assert_stored_equals_served(pool, http, slow_exchange, symbols)
                print(  # noqa: T201 - the measured figures, shown with -s
                    f"redis restart: submits while down {max(submit_times):.2f} s max, "
                    f"/ready {max(ready_times):.2f} s max; first submit accepted "
                    f"{accepted:.2f} s after restart; all {len(states)} tasks SUCCESS "
                    f"{recovered:.1f} s after restart; {rows} bars = ledger"
                )
        finally:
            scheduler_publisher.close()
            worker.stop()
            redis.stop()
