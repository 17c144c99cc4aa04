"""Postgres stopped for 5 s in the middle of a 200-symbol fetch, and again in the middle of
a snapshot backfill over 50 portfolios: both tasks end SUCCESS, the stored bars equal what
the exchange served, every portfolio's snapshots are all there, and the worker's pool
recovers without a restart (docs/RELIABILITY.md)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service.core.contracts import CreatePortfolioSnapshot, FetchMarketData
from service.core.migrations import migrate
from service.core.settings import Settings
from service.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from service.scheduler import create_publisher
from tests.conftest import start_worker
from tests.faults import (
    assert_stored_equals_served,
    exchange_latency,
    fresh_symbols,
    wait_final,
    wait_state,
)
from tests.portfolio_data import add_transactions, create_portfolio, new_owner_id

OUTAGE_SECONDS = 5.0
PORTFOLIOS = 50


async def _outage(server: EmbeddedPostgres, pool: asyncpg.Pool) -> tuple[asyncpg.Pool, float]:
    """Stop Postgres for OUTAGE_SECONDS and start it again; the test's own pool is replaced
    (only the services' pools are under test). Returns the new pool and when it restarted."""
    await pool.close()
    server.stop()
    await asyncio.sleep(OUTAGE_SECONDS)
    server.start()
    return await asyncpg.create_pool(server.url, min_size=1, max_size=4), time.monotonic()


class TestPostgresRestart:
    @pytest.mark.timeout(300)
    async def test_restart_mid_fetch_and_mid_snapshot_loses_nothing(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        exchange: str,
        http: aiohttp.ClientSession,
        today: date,
    ) -> None:
        """A fetch of 200 symbols and a 50-portfolio backfill each straddle a 5 s Postgres
        stop: both end SUCCESS with transactions retried, bars equal the ledger, and every
        portfolio has a snapshot for every valuation date."""
        server = EmbeddedPostgres(scratch_dir / "pg-restart", durable=False)
        server.start()
        await migrate(server.url)
        redis = EmbeddedRedis(scratch_dir / "pg-restart-redis")
        redis.start()
        env = {
            **base_env,
            "DATABASE_URL": server.url,
            "REDIS_URL": redis.url,
            "CELERY_BROKER_URL": redis.url,
            "CELERY_RESULT_BACKEND": redis.url,
            "YAHOO_RATE_LIMIT": "20/second",
        }
        log_path = scratch_dir / "pg-restart-worker.log"
        worker = start_worker(env, log_path=log_path, name="pgrestart")
        publisher = create_publisher(Settings.from_env(env))
        pool = await asyncpg.create_pool(server.url, min_size=1, max_size=4)
        try:
            symbols = fresh_symbols("PG", 200)
            fetch_id = str(uuid.uuid4())
            async with exchange_latency(http, exchange, latency_ms=50):
                await publisher.publish(
                    FetchMarketData(symbols=symbols, period="2y"), task_id=fetch_id
                )
                assert await wait_state(pool, fetch_id, "PROGRESS", within=60)
                pool, restarted = await _outage(server, pool)
                states = await wait_final(pool, [fetch_id], within=120)
            fetch_recovered = time.monotonic() - restarted
            assert states == {fetch_id: "SUCCESS"}, worker.log_tail(6000)
            bars = await assert_stored_equals_served(pool, http, exchange, symbols)

            owner = await new_owner_id(pool)
            start = today - timedelta(days=600)
            for n in range(PORTFOLIOS):
                portfolio = await create_portfolio(pool, owner_id=owner, name=f"p{n}")
                await add_transactions(
                    pool,
                    portfolio,
                    [
                        {"type": "DEPOSIT", "date": start, "amount": "100000"},
                        *(
                            {
                                "type": "BUY",
                                "date": start + timedelta(days=7 * k),
                                "symbol": symbols[(n * 3 + k) % len(symbols)],
                                "quantity": "10",
                                "price": "5",
                            }
                            for k in range(3)
                        ),
                    ],
                )
            snapshot_id = str(uuid.uuid4())
            end = today - timedelta(days=1)
            await publisher.publish(
                CreatePortfolioSnapshot(user_id=owner, start=start, end=end), task_id=snapshot_id
            )
            assert await wait_state(pool, snapshot_id, "STARTED", within=60)
            pool, restarted = await _outage(server, pool)
            states = await wait_final(pool, [snapshot_id], within=120)
            snapshot_recovered = time.monotonic() - restarted
            assert states == {snapshot_id: "SUCCESS"}, worker.log_tail(6000)
            result = json.loads(
                await pool.fetchval("SELECT result FROM tasks WHERE id = $1", snapshot_id)
            )
            assert result["failed"] == {}
            counts = await pool.fetch(
                "SELECT p.id, count(s.date) AS n FROM portfolios p "
                "LEFT JOIN portfolio_snapshots s ON s.portfolio_id = p.id "
                "WHERE p.owner_id = $1 GROUP BY p.id",
                owner,
            )
            assert len(counts) == PORTFOLIOS
            assert {row["n"] for row in counts} == {result["dates"]}, "a portfolio is partial"

            retried = log_path.read_text().count("transaction retried")
            assert retried >= 1, "no transaction met the outage"
            print(  # noqa: T201 - the measured figures, shown with -s
                f"postgres restart: fetch SUCCESS {fetch_recovered:.1f} s after restart, "
                f"{bars} bars = ledger; snapshots SUCCESS {snapshot_recovered:.1f} s after "
                f"restart, {PORTFOLIOS} portfolios x {result['dates']} dates; "
                f"{retried} transactions retried"
            )
        finally:
            await pool.close()
            publisher.close()
            worker.stop()
            redis.stop()
            server.stop()
