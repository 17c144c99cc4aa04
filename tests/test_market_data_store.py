"""Fetching chunks of symbols into Postgres: exact bars, idempotent writes, incremental
refresh, a refetch when a split appears, failures and fetch state, quotes and asset info."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from service.core.clock import exchange_today
from service.core.settings import Settings
from service.core.trading_calendar import NYSE
from tests.conftest import PINNED_CLOCK, PINNED_LAST_SESSION
from tests.market_sim import Sim, failover, market_settings
from tests.portfolio_data import add_transactions, create_portfolio, new_owner_id
from workers.market_data.fetch import ChunkFetcher
from workers.market_data.plan import Window, requested_window
from workers.market_data.simulated_exchange.series import build_series, symbol_seed
from workers.market_data.store import upsert_asset_info, upsert_quotes
from workers.market_data.types import Quote

pytestmark = pytest.mark.usefixtures("clean_exchange")


@pytest.fixture
def msettings(base_env: dict[str, str], sim: Sim) -> Settings:
    """Yahoo on the simulated exchange, with tight retry budgets."""
    return market_settings(base_env, sim.url, MARKET_DATA_RETRY_BUDGET_SECONDS="0.5")


def _fetcher(
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    batch_rows: int = 20_000,
) -> ChunkFetcher:
    return ChunkFetcher(
        pool=pool,
        failover=failover(settings, session=http, redis=redis),
        overlap_days=settings.market_data_overlap_days,
        clock=PINNED_CLOCK,
        batch_rows=batch_rows,
    )


async def _rows(pool: asyncpg.Pool, table: str, symbols: list[str]) -> list[dict[str, Any]]:
    key = "ex_date" if table == "dividends" else "date"
    rows = await pool.fetch(
        f"SELECT * FROM {table} WHERE symbol = ANY($1::text[]) ORDER BY symbol, {key}",  # noqa: S608 - test table names
        symbols,
    )
    return [dict(r) for r in rows]


def _dividend_symbols(prefix: str, count: int) -> list[str]:
    """Symbols whose simulated series pays dividends."""
    found = [f"{prefix}{i}" for i in range(400) if symbol_seed(f"{prefix}{i}") % 3 == 0]
    return found[:count]


class TestChunkFetch:
    async def test_stores_exactly_the_served_bars(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """Every served bar is stored once, in small write batches, with its dividends."""
        symbols = _dividend_symbols("EXACT", 12)
        today = exchange_today(PINNED_CLOCK)
        wanted = Window(today - timedelta(days=400), today)
        fetcher = _fetcher(msettings, pool=pool, http=http, redis=redis_client, batch_rows=300)
        result = await fetcher.run(symbols, wanted)
        assert result.fetched == len(symbols)
        assert result.failed == []
        stored = await pool.fetch(
            "SELECT symbol, count(*) AS n FROM daily_prices WHERE symbol = ANY($1::text[]) "
            "GROUP BY symbol",
            symbols,
        )
        assert {r["symbol"]: r["n"] for r in stored} == {
            s: sim.exchange.bars_served[s] for s in symbols
        }
        assert result.rows_written >= sum(sim.exchange.bars_served[s] for s in symbols)
        assert await pool.fetchval(
            "SELECT count(*) FROM dividends WHERE symbol = ANY($1::text[])", symbols
        )

    async def test_same_fetch_twice_leaves_identical_rows(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
    ) -> None:
        """Fetching the same window again changes no row (not even updated_at) and reports
        nothing written."""
        symbols = _dividend_symbols("IDEM", 6)
        today = exchange_today(PINNED_CLOCK)
        wanted = Window(today - timedelta(days=200), today)
        fetcher = _fetcher(msettings, pool=pool, http=http, redis=redis_client)
        first = await fetcher.run(symbols, wanted)
        snapshot = {t: await _rows(pool, t, symbols) for t in ("daily_prices", "dividends")}
        second = await fetcher.run(symbols, wanted)
        assert first.rows_written > 0
        assert second.rows_written == 0
        assert second.fetched == len(symbols)
        for table, rows in snapshot.items():
            assert await _rows(pool, table, symbols) == rows

    async def test_refresh_is_incremental(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """A second fetch asks only for the days from the last stored bar minus the overlap."""
        symbols = ["INCR1", "INCR2"]
        today = exchange_today(PINNED_CLOCK)
        wanted = Window(today - timedelta(days=365), today)
        fetcher = _fetcher(msettings, pool=pool, http=http, redis=redis_client)
        await fetcher.run(symbols, wanted)
        first = {s: sim.exchange.bars_served[s] for s in symbols}
        await fetcher.run(symbols, wanted)
        overlap_days = len(NYSE.trading_days(today - timedelta(days=10), today))
        for symbol in symbols:
            assert first[symbol] > 200
            assert 0 < sim.exchange.bars_served[symbol] - first[symbol] <= overlap_days

    async def test_history_the_provider_lacks_is_asked_for_once(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """After a `max` fetch (from 1970) the first bar's date is remembered as the first
        available one, so the next refreshes download only the overlap."""
        symbol = f"MAX{uuid.uuid4().hex[:6].upper()}"
        today = exchange_today(PINNED_CLOCK)
        wanted = requested_window(period="max", start=None, end=None, today=today)
        fetcher = _fetcher(msettings, pool=pool, http=http, redis=redis_client)
        await fetcher.run([symbol], wanted)
        full = sim.exchange.bars_served[symbol]
        assert full == len(NYSE.trading_days(date(2000, 1, 3), PINNED_LAST_SESSION))
        first_available = "SELECT first_available_date FROM fetch_state WHERE symbol = $1"
        assert await pool.fetchval(first_available, symbol) == date(2000, 1, 3)
        for _ in range(2):
            before = sim.exchange.bars_served[symbol]
            await fetcher.run([symbol], wanted)
            last = PINNED_LAST_SESSION
            overlap = len(NYSE.trading_days(last - timedelta(days=5), last))
            assert sim.exchange.bars_served[symbol] - before == overlap
        assert await pool.fetchval(first_available, symbol) == date(2000, 1, 3)

    async def test_unknown_symbols_are_listed_with_reasons(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
    ) -> None:
        """Three unknown symbols among many fail with a reason and leave no rows; the rest
        are stored."""
        unknown = ["ZZBAD1", "ZZBAD2", "ZZBAD3"]
        symbols = [f"MIX{i}" for i in range(30)] + unknown
        today = exchange_today(PINNED_CLOCK)
        result = await _fetcher(msettings, pool=pool, http=http, redis=redis_client).run(
            symbols, Window(today - timedelta(days=30), today)
        )
        assert result.fetched == 30
        assert sorted(f.symbol for f in result.failed) == unknown
        assert all("No data found" in f.reason for f in result.failed)
        assert not await pool.fetchval(
            "SELECT count(*) FROM assets WHERE symbol = ANY($1::text[])", unknown
        )

    async def test_fetch_state_records_success_and_failure(
        self,
        base_env: dict[str, str],
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """A success records the last stored date and provider; later failures count up with
        their reason, and the next success resets them."""
        settings = market_settings(
            base_env,
            sim.url,
            MARKET_DATA_RETRY_BUDGET_SECONDS="0.3",
            MARKET_DATA_BREAKER_FAILURES="100",
        )
        today = exchange_today(PINNED_CLOCK)
        wanted = Window(today - timedelta(days=30), today)
        fetcher = _fetcher(settings, pool=pool, http=http, redis=redis_client)
        await fetcher.run(["STATE"], wanted)
        state = await pool.fetchrow("SELECT * FROM fetch_state WHERE symbol = 'STATE'")
        last_bar = await pool.fetchval("SELECT max(date) FROM daily_prices WHERE symbol = 'STATE'")
        assert state["last_stored_date"] == last_bar
        assert state["provider"] == "yahoo"
        assert state["consecutive_failures"] == 0
        sim.configure(faults=["500"], fault_rate=1.0)
        for _ in range(2):
            result = await fetcher.run(["STATE"], wanted)
            assert [f.symbol for f in result.failed] == ["STATE"]
        state = await pool.fetchrow("SELECT * FROM fetch_state WHERE symbol = 'STATE'")
        assert state["consecutive_failures"] == 2
        assert state["last_error_kind"] == "transient"
        assert "server error (500)" in state["last_error"]
        assert state["last_stored_date"] == last_bar
        sim.configure()
        await fetcher.run(["STATE"], wanted)
        state = await pool.fetchrow("SELECT * FROM fetch_state WHERE symbol = 'STATE'")
        assert state["consecutive_failures"] == 0
        assert state["last_error"] is None


def _split_symbol(after: date, *, skip: int = 0) -> tuple[str, date]:
    """A simulated symbol whose first split is after `after` (skipping `skip` matches)."""
    for i in range(5000):
        symbol = f"SPLIT{i}"
        if symbol_seed(symbol) % 11:
            continue
        splits = build_series(symbol, exchange_today(PINNED_CLOCK)).splits
        if splits and after < min(splits) < exchange_today(PINNED_CLOCK) - timedelta(days=30):
            if skip == 0:
                return symbol, min(splits)
            skip -= 1
    raise AssertionError("no symbol with a recent split")


async def _put_snapshots(pool: asyncpg.Pool, portfolio_id: int, days: list[date]) -> None:
    await pool.executemany(
        "INSERT INTO portfolio_snapshots (portfolio_id, date, total_value, market_value, cash, "
        "cost_basis, unrealized_pnl, realized_pnl, income, fees, net_invested, net_flow, "
        "day_change, holdings) VALUES ($1, $2, 1, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, '[]') "
        "ON CONFLICT DO NOTHING",
        [(portfolio_id, day) for day in days],
    )


async def _snapshot_dates(pool: asyncpg.Pool, portfolio_id: int) -> list[date]:
    rows = await pool.fetch(
        "SELECT date FROM portfolio_snapshots WHERE portfolio_id = $1 ORDER BY date", portfolio_id
    )
    return [row["date"] for row in rows]


class TestSplitRefetch:
    async def test_new_split_refetches_the_stored_history(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """When an incremental refresh reveals a split, the symbol's whole stored range is
        fetched again (and stored with the split); a symbol without one stays incremental."""
        symbol, split_day = _split_symbol(after=date(2024, 1, 1))
        control = next(
            f"PLAIN{i}" for i in range(500) if symbol_seed(f"PLAIN{i}") % 33 == 1
        )  # neither splits nor dividends
        wanted = Window(split_day - timedelta(days=120), split_day + timedelta(days=20))
        fetcher = _fetcher(msettings, pool=pool, http=http, redis=redis_client)
        sim.configure(today=split_day - timedelta(days=3))
        await fetcher.run([symbol, control], wanted)
        assert not await pool.fetchval("SELECT count(*) FROM splits WHERE symbol = $1", symbol)
        served = {s: sim.exchange.bars_served[s] for s in (symbol, control)}
        sim.configure(today=split_day + timedelta(days=5))
        await fetcher.run([symbol, control], wanted)
        refetched = sim.exchange.bars_served[symbol] - served[symbol]
        incremental = sim.exchange.bars_served[control] - served[control]
        full = len(NYSE.trading_days(wanted.start, split_day + timedelta(days=5)))
        assert refetched >= full  # the incremental request, then the whole range again
        assert incremental < 12
        assert await pool.fetchval("SELECT date FROM splits WHERE symbol = $1", symbol) == split_day

    async def test_new_split_drops_the_snapshots_it_makes_stale(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """Snapshots valued with the pre-split share count (dated on or after a newly stored
        split) are dropped for rebuilding; earlier ones, other portfolios' and those written
        once the split is known are kept."""
        symbol, split_day = _split_symbol(after=date(2024, 1, 1), skip=1)
        before, after = split_day - timedelta(days=1), split_day + timedelta(days=1)
        owner = await new_owner_id(pool)
        holder = await create_portfolio(pool, owner_id=owner, name="holds the splitter")
        other = await create_portfolio(pool, owner_id=owner, name="holds nothing")
        start = split_day - timedelta(days=60)
        await add_transactions(
            pool,
            holder,
            [{"type": "BUY", "date": start, "symbol": symbol, "quantity": 1, "price": 1}],
        )
        await add_transactions(pool, other, [{"type": "DEPOSIT", "date": start, "amount": 1}])
        wanted = Window(start, split_day + timedelta(days=20))
        fetcher = _fetcher(msettings, pool=pool, http=http, redis=redis_client)
        sim.configure(today=split_day - timedelta(days=3))
        await fetcher.run([symbol], wanted)
        for portfolio in (holder, other):
            await _put_snapshots(pool, portfolio, [before, split_day, after])
        sim.configure(today=split_day + timedelta(days=5))
        await fetcher.run([symbol], wanted)
        assert await _snapshot_dates(pool, holder) == [before]
        assert await _snapshot_dates(pool, other) == [before, split_day, after]
        await _put_snapshots(pool, holder, [after])
        await fetcher.run([symbol], wanted)
        assert await _snapshot_dates(pool, holder) == [before, after]


class TestQuotesAndInfo:
    async def test_quotes_upsert_is_idempotent(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
    ) -> None:
        """Latest quotes are stored per symbol; storing them again changes nothing."""
        chain = failover(msettings, session=http, redis=redis_client)
        found, missing = await chain.quotes(["QUOTEA", "QUOTEB", "ZZQUOTE"])
        assert sorted(found) == ["QUOTEA", "QUOTEB"]
        assert list(missing) == ["ZZQUOTE"]
        async with pool.acquire() as connection:
            assert await upsert_quotes(connection, list(found.values())) == 2
            assert await upsert_quotes(connection, list(found.values())) == 0
        price = await pool.fetchval("SELECT price FROM latest_quotes WHERE symbol = 'QUOTEA'")
        assert float(price) == pytest.approx(found["QUOTEA"][0].price)

    async def test_an_older_quote_never_replaces_a_newer_one(self, pool: asyncpg.Pool) -> None:
        """A late write (another provider's staler price, a redelivered task) cannot roll the
        latest quote back; a newer one replaces it."""
        now = PINNED_CLOCK()
        symbol = f"QT{uuid.uuid4().hex[:6].upper()}"

        def quote(price: float, at: datetime | None) -> tuple[Quote, str]:
            return Quote(symbol=symbol, price=price, market_time=at), "test"

        async with pool.acquire() as connection:
            assert await upsert_quotes(connection, [quote(10.0, now)]) == 1
            assert await upsert_quotes(connection, [quote(9.0, now - timedelta(hours=1))]) == 0
            assert await upsert_quotes(connection, [quote(8.0, None)]) == 0
            assert await upsert_quotes(connection, [quote(11.0, now + timedelta(minutes=1))]) == 1
        price = await pool.fetchval("SELECT price FROM latest_quotes WHERE symbol = $1", symbol)
        assert float(price) == 11.0

    async def test_asset_info_is_stored(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
    ) -> None:
        """quoteSummary's reference data lands on the asset row."""
        chain = failover(msettings, session=http, redis=redis_client)
        info, source = await chain.asset_info("INFOCO")
        async with pool.acquire() as connection:
            await upsert_asset_info(connection, info, source=source)
        row = await pool.fetchrow("SELECT * FROM assets WHERE symbol = 'INFOCO'")
        assert row["name"] == "Infoco Holdings Inc."
        assert row["info_source"] == "yahoo"
        assert row["sector"] == info.sector


class TestFxPairPrecision:
    async def test_a_small_rate_keeps_its_digits_and_prices_keep_six_places(
        self,
        msettings: Settings,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """JPYUSD=X (about 0.0075) is stored as served, to ten places, not rounded to six (4
        significant digits); an equity's prices stay at six places; a second fetch of the
        same bars changes nothing."""
        pair, stock = "JPYUSD=X", f"FXP{uuid.uuid4().hex[:4].upper()}"
        await pool.execute("DELETE FROM daily_prices WHERE symbol = $1", pair)
        today = exchange_today(PINNED_CLOCK)
        wanted = Window(today - timedelta(days=30), today)
        fetcher = _fetcher(msettings, pool=pool, http=http, redis=redis_client)
        first = await fetcher.run([pair, stock], wanted)
        assert first.rows_written > 0
        served = sim.exchange.ledger
        stored = {
            row["date"].isoformat(): row["close"]
            for row in await pool.fetch(
                "SELECT date, close FROM daily_prices WHERE symbol = $1", pair
            )
        }
        assert stored == {day: Decimal(repr(close)) for day, close in served[pair].items()}
        assert all(close.as_tuple().exponent == -10 for close in stored.values())
        assert any(len(close.normalize().as_tuple().digits) > 4 for close in stored.values())
        equity = await pool.fetch("SELECT close::text FROM daily_prices WHERE symbol = $1", stock)
        assert equity
        assert all(len(row["close"].split(".")[1]) == 6 for row in equity)
        assert (await fetcher.run([pair, stock], wanted)).rows_written == 0
