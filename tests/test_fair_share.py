"""Fair share (issue 11): one key cannot take everyone's symbols, event streams or database
connections, and user submits cannot starve the scheduler's fires. Real API processes,
real Redis, Postgres and Celery workers throughout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from service.core.redis_keys import event_streams_key
from service.core.settings import Settings
from service.core.users import IssuedKey
from service.dev.embedded import EmbeddedRedis
from service.scheduler.replica import create_publisher
from tests.api_client import Api
from tests.conftest import start_worker
from tests.market_sim import serve_exchange
from tests.portfolio_data import add_transactions, create_portfolio
from tests.processes import serve_api
from tests.scheduling import run_leader_at

NewUser = Callable[..., Awaitable[IssuedKey]]
pytestmark = pytest.mark.timeout(120)

# The pinned day at 14:05 New York: the 14:00 hourly price fire is due.
HOURLY_AT = datetime(2026, 11, 18, 19, 5, tzinfo=UTC)
SYMBOL_BUDGET = 10
STREAMS_PER_KEY = 2


def symbols(n: int) -> list[str]:
    """`n` symbols no other submit of the session names."""
    tag = uuid.uuid4().hex[:5].upper()
    return [f"F{tag}{i}" for i in range(n)]


def redis_db(server: EmbeddedRedis, db: int) -> str:
    """The session's Redis, database `db`: queues no session worker consumes."""
    return f"redis://{server.host}:{server.port}/{db}"


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float) -> bool:
    """Poll `check` every 0.1 s until true or `within` seconds have passed."""
    for _ in range(int(within / 0.1)):
        if await check():
            return True
        await asyncio.sleep(0.1)
    return await check()


@pytest.fixture(scope="module")
def limited_api(
    base_env: dict[str, str], redis_server: EmbeddedRedis, scratch_dir: Path
) -> Iterator[str]:
    """An API with a 10-symbol daily budget and two streams per key, on a Redis database no
    worker consumes, so submitted tasks stay PENDING and their streams stay open."""
    env = {
        **base_env,
        "REDIS_URL": redis_db(redis_server, 6),
        "SUBMIT_SYMBOL_LIMIT": f"{SYMBOL_BUDGET}/day",
        "SSE_STREAMS_PER_KEY": str(STREAMS_PER_KEY),
    }
    with serve_api(env, log_path=scratch_dir / "api-limited.log") as (url, _):
        yield url


class TestSymbolBudget:
    async def test_symbols_beyond_the_budget_are_429_and_a_refusal_costs_nothing(
        self, limited_api: str, http: aiohttp.ClientSession, new_user: NewUser
    ) -> None:
        """A key's fetches share SUBMIT_SYMBOL_LIMIT symbols: the one that would exceed it is
        a 429 problem with Retry-After, and a smaller one still fits afterwards."""
        api = Api(http, limited_api, (await new_user()).api_key)
        assert (await api.submit("market-data", {"symbols": symbols(6)}))[0] == 202
        status, problem, headers = await api.request(
            "POST", "/api/v1/tasks/market-data", body={"symbols": symbols(5)}
        )
        assert status == 429
        assert problem["status"] == 429
        assert "symbols" in problem["detail"]
        assert 1 <= int(headers["Retry-After"]) <= 86_400
        assert (await api.submit("market-data", {"symbols": symbols(4)}))[0] == 202
        assert (await api.submit("asset-info", {"symbol": "AAPL"}))[0] == 429
        other = Api(http, limited_api, (await new_user()).api_key)
        assert (await other.submit("market-data", {"symbols": symbols(10)}))[0] == 202

    async def test_a_request_over_the_whole_budget_fills_an_empty_window(
        self, limited_api: str, http: aiohttp.ClientSession, new_user: NewUser
    ) -> None:
        """A submit naming more symbols than the whole budget passes into an empty window and
        uses all of it."""
        api = Api(http, limited_api, (await new_user()).api_key)
        assert (await api.submit("market-data", {"symbols": symbols(15)}))[0] == 202
        assert (await api.submit("market-data", {"symbols": symbols(1)}))[0] == 429

    async def test_portfolio_price_updates_count_the_symbols_bought(
        self, limited_api: str, http: aiohttp.ClientSession, new_user: NewUser, pool: asyncpg.Pool
    ) -> None:
        """A price update of the caller's portfolios costs the distinct symbols ever bought in
        them (here 3), whether or not the request names them."""
        issued = await new_user()
        portfolio = await create_portfolio(pool, owner_id=issued.user_id, name="budget")
        day = date(2026, 11, 2)
        await add_transactions(
            pool,
            portfolio,
            [
                {"type": "DEPOSIT", "date": day, "amount": 10_000},
                *(
                    {"type": "BUY", "date": day, "symbol": s, "quantity": 1, "price": 10}
                    for s in symbols(3)
                ),
            ],
        )
        api = Api(http, limited_api, issued.api_key)
        assert (await api.submit("portfolio-prices", {}))[0] == 202
        assert (await api.submit("market-data", {"symbols": symbols(8)}))[0] == 429
        assert (await api.submit("market-data", {"symbols": symbols(7)}))[0] == 202


@contextlib.asynccontextmanager
async def open_stream(api: Api, task_id: str) -> AsyncIterator[aiohttp.ClientResponse]:
    """An open events stream whose first event has arrived."""
    async with api.session.get(
        f"{api.base_url}/api/v1/tasks/{task_id}/events", headers=api.headers()
    ) as response:
        if response.status == 200:
            assert (await response.content.readline()).startswith(b"event: status")
        yield response


async def abrupt_stream(url: str, api_key: str, task_id: str) -> asyncio.StreamWriter:
    """A stream opened on a raw socket, its first event read; abort the writer to vanish."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /api/v1/tasks/{task_id}/events HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {api_key}\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    assert b"event: status" in await reader.readuntil(b"event: status")
    return writer


class TestStreamCap:
    async def test_the_stream_over_the_cap_is_429_and_a_closed_one_frees_its_slot(
        self,
        limited_api: str,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        redis_server: EmbeddedRedis,
    ) -> None:
        """A key holds at most SSE_STREAMS_PER_KEY open streams; the next is a 429 problem,
        another key is unaffected, and a stream closed by its client, politely or by a
        dropped connection, frees its slot."""
        issued = await new_user()
        api = Api(http, limited_api, issued.api_key)
        _, answer = await api.submit("market-data", {"symbols": symbols(1)})
        task_id = answer["task_id"]
        streams = aioredis.Redis.from_url(redis_db(redis_server, 6))
        slots_key = event_streams_key(str(issued.key_id))
        try:
            async with open_stream(api, task_id) as first:
                assert first.status == 200
                writer = await abrupt_stream(limited_api, issued.api_key, task_id)
                async with open_stream(api, task_id) as third:
                    assert third.status == 429
                    problem = json.loads(await third.text())
                    assert problem["status"] == 429
                    assert third.headers["Retry-After"]
                assert await streams.zcard(slots_key) == STREAMS_PER_KEY
                other = Api(http, limited_api, (await new_user()).api_key)
                _, theirs = await other.submit("market-data", {"symbols": symbols(1)})
                async with open_stream(other, theirs["task_id"]) as elsewhere:
                    assert elsewhere.status == 200

                writer.transport.abort()
                assert await eventually(lambda: _count_is(streams, slots_key, 1), within=10), (
                    "an aborted stream kept its slot"
                )
                async with open_stream(api, task_id) as replacement:
                    assert replacement.status == 200
            assert await eventually(lambda: _count_is(streams, slots_key, 0), within=10)
        finally:
            await streams.aclose()


async def _count_is(client: aioredis.Redis, key: str, expected: int) -> bool:
    return int(await client.zcard(key)) == expected


class TestPoolAcquire:
    async def test_an_exhausted_pool_answers_503_and_recovers(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        pool: asyncpg.Pool,
    ) -> None:
        """With the API's only connection stuck behind a lock, the next request waits
        DB_ACQUIRE_TIMEOUT_SECONDS and gets a 503 problem with Retry-After; once the lock goes,
        both requests are served again."""
        env = {
            **base_env,
            "DATABASE_POOL_MIN": "1",
            "DATABASE_POOL_MAX": "1",
            "DB_ACQUIRE_TIMEOUT_SECONDS": "0.5",
        }
        issued = await new_user()
        with serve_api(env, log_path=scratch_dir / "api-one-connection.log") as (url, _):
            api = Api(http, url, issued.api_key)
            assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 200
            async with pool.acquire() as blocker, blocker.transaction():
                # The key is cached by now; the route's own read of tasks parks behind
                # this lock, holding the connection.
                await blocker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
                stuck = asyncio.create_task(api.request("GET", "/api/v1/tasks/active"))
                assert await eventually(lambda: _waiting_on_lock(pool), within=10)
                status, problem, headers = await api.request("GET", "/api/v1/tasks/active")
                assert status == 503
                assert problem["status"] == 503
                assert "no database connection" in problem["detail"]
                assert headers["Retry-After"] == "1"
            assert (await stuck)[0] == 200
            assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 200

    async def test_a_submit_releases_its_connection_while_publishing(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        pool: asyncpg.Pool,
    ) -> None:
        """While a submit waits on a broker that never answers, another request of an API
        with a one-connection pool is served; the submit then answers 503 and its task is
        FAILURE (BrokerUnavailable)."""
        publishing = asyncio.Event()
        peers: list[asyncio.StreamWriter] = []

        async def swallow(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer)
            publishing.set()

        silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        env = {
            **base_env,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
            "DATABASE_POOL_MIN": "1",
            "DATABASE_POOL_MAX": "1",
            "DB_ACQUIRE_TIMEOUT_SECONDS": "0.5",
            "PUBLISH_TIMEOUT_SECONDS": "3",
        }
        issued = await new_user()
        try:
            with serve_api(env, log_path=scratch_dir / "api-silent-broker.log") as (url, _):
                api = Api(http, url, issued.api_key)
                submit = asyncio.create_task(
                    api.request("POST", "/api/v1/tasks/market-data", body={"symbols": symbols(1)})
                )
                await asyncio.wait_for(publishing.wait(), timeout=10)
                assert not submit.done()
                assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 200
                assert not submit.done(), "the submit ended before the check ran"
                status, problem, _ = await submit
                assert status == 503, problem
                [row] = await pool.fetch(
                    "SELECT state, error FROM tasks WHERE owner_id = $1", issued.user_id
                )
                assert row["state"] == "FAILURE"
                assert row["error"]["type"] == "BrokerUnavailable"
        finally:
            for writer in peers:
                writer.transport.abort()
            silent.close()
            await silent.wait_closed()


async def _waiting_on_lock(pool: asyncpg.Pool) -> bool:
    waiting = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'findash-api' AND wait_event_type = 'Lock'"
    )
    return bool(waiting)


class TestScheduledFiresAreNotStarved:
    async def test_a_fire_starts_within_5_s_while_user_submits_fill_the_workers(
        self,
        base_env: dict[str, str],
        redis_server: EmbeddedRedis,
        scratch_dir: Path,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        pool: asyncpg.Pool,
    ) -> None:
        """With every general worker busy on slow user fetches and more queued behind them,
        a scheduled fire still starts within 5 s of being sent (the reserved worker)."""
        async with serve_exchange() as sim:
            sim.configure(latency_ms=1500)
            env = {
                **base_env,
                "REDIS_URL": redis_db(redis_server, 7),
                "YAHOO_BASE_URL": sim.url,
                "YAHOO_CONCURRENCY": "1",
                "MARKET_DATA_MAX_HELPERS": "0",
            }
            settings = Settings.from_env(env)
            general = start_worker(
                env, log_path=scratch_dir / "worker-general.log", name="busy", concurrency=1
            )
            reserved = start_worker(
                env,
                log_path=scratch_dir / "worker-reserved.log",
                name="reserved",
                concurrency=1,
                queues="scheduled",
            )
            publisher = create_publisher(settings)
            try:
                with serve_api(env, log_path=scratch_dir / "api-flood.log") as (url, _):
                    flood = [Api(http, url, (await new_user()).api_key) for _ in range(3)]
                    submitted = [
                        (await user.submit("market-data", {"symbols": symbols(8)}))[1]["task_id"]
                        for user in flood
                        for _ in range(5)
                    ]
                    assert await eventually(
                        lambda: _started(pool, submitted, at_least=1), within=30
                    ), "the flood never reached the general worker"

                    await run_leader_at(pool, settings, publisher, now=HOURLY_AT)

                    fire = await pool.fetchrow(
                        "SELECT task_id::text, sent_at FROM schedule_fires "
                        "WHERE job_id = 'hourly-price-update' AND state = 'sent'"
                    )
                    assert fire is not None
                    assert await eventually(
                        lambda: _started(pool, [fire["task_id"]], at_least=1), within=15
                    ), "the fire did not start"
                    delay = await pool.fetchval(
                        "SELECT extract(epoch FROM started_at - $2) FROM tasks WHERE id = $1",
                        fire["task_id"],
                        fire["sent_at"],
                    )
                    assert float(delay) <= 5.0, f"the fire started {delay} s after it was sent"
                    assert await _started(pool, submitted, at_least=1)
                    assert not await _started(pool, submitted, at_least=len(submitted))
            finally:
                publisher.close()
                general.stop(timeout=3)
                reserved.stop(timeout=3)


async def _started(pool: asyncpg.Pool, task_ids: list[str], *, at_least: int) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM tasks WHERE id = ANY($1::text[]) AND started_at IS NOT NULL",
        task_ids,
    )
    return int(count) >= at_least
