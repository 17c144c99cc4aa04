"""The market-data tasks end to end: API submit → real prefork worker → simulated exchange
→ Postgres, including the chunked fan-out, cancellation and the read endpoints."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.core.contracts import QUEUE_SCHEDULED, UpdatePortfolioPrices
from service.core.settings import Settings
from service.core.users import IssuedKey
from service.scheduler.replica import create_publisher
from tests.portfolio_data import create_portfolio, new_owner_id
from tests.processes import ManagedProcess

pytestmark = pytest.mark.usefixtures("worker")
NewUser = Callable[..., Awaitable[IssuedKey]]


class Client:
    """Just enough of the API for these tests."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self.session = session
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; the JSON answer."""
        async with self.session.request(
            method, f"{self.base_url}{path}", json=body, headers=self.headers
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def submit(self, path: str, body: dict[str, Any]) -> str:
        """POST a task and return its id."""
        status, answer = await self.call("POST", f"/api/v1/tasks/{path}", body)
        assert status == 202, answer
        return str(answer["task_id"])

    async def status(self, task_id: str) -> dict[str, Any]:
        """The task's status."""
        status, answer = await self.call("GET", f"/api/v1/tasks/status/{task_id}")
        assert status == 200, answer
        return dict(answer)

    async def finished(self, task_id: str, *, within: float) -> dict[str, Any]:
        """Poll until the task ends (or `within` seconds pass) and return its status."""
        deadline = time.monotonic() + within
        seen: list[str] = []
        while time.monotonic() < deadline:
            status = await self.status(task_id)
            seen.append(status["state"])
            if status["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
                status["seen"] = seen
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"task {task_id} did not finish in {within} s: {seen[-5:]}")


@pytest.fixture
async def client(api_url: str, http: aiohttp.ClientSession, new_user: NewUser) -> Client:
    """An API client for a fresh user."""
    return Client(http, api_url, (await new_user()).api_key)


@pytest.fixture
async def exchange_config(exchange: str, http: aiohttp.ClientSession) -> AsyncIterator[str]:
    """The session exchange's URL; its config is restored to defaults afterwards."""
    yield exchange
    async with http.put(f"{exchange}/_sim/config", json={}) as response:
        assert response.status == 200


def _symbols(prefix: str, count: int) -> list[str]:
    tag = uuid.uuid4().hex[:4].upper()
    return [f"{prefix}{tag}{i}" for i in range(count)]


async def _served(http: aiohttp.ClientSession, exchange: str) -> dict[str, int]:
    async with http.get(f"{exchange}/_sim/stats") as response:
        return dict((await response.json())["bars_served"])


async def _stored(pool: asyncpg.Pool, symbols: list[str]) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT symbol, count(*) AS n FROM daily_prices WHERE symbol = ANY($1::text[]) "
        "GROUP BY symbol",
        symbols,
    )
    return {r["symbol"]: r["n"] for r in rows}


class TestFetchMarketData:
    async def test_300_symbols_store_exactly_the_served_bars(
        self, client: Client, pool: asyncpg.Pool, http: aiohttp.ClientSession, exchange: str
    ) -> None:
        """A 300-symbol fetch through the worker stores exactly the bars the exchange served,
        and its result counts them."""
        symbols = _symbols("W", 300)
        task_id = await client.submit("market-data", {"symbols": symbols, "period": "3mo"})
        status = await client.finished(task_id, within=90)
        assert status["state"] == "SUCCESS", status
        result = status["result"]
        served = await _served(http, exchange)
        stored = await _stored(pool, symbols)
        assert result["requested"] == result["fetched"] == 300
        assert result["failed"] == []
        assert stored == {s: served[s] for s in symbols}
        assert result["rows_written"] == sum(stored.values())
        assert status["progress"] == {"current": 300, "total": 300, "message": "done"}

    async def test_2000_symbols_chunked_into_one_result(
        self, client: Client, pool: asyncpg.Pool
    ) -> None:
        """2,000 symbols (three unknown) run as chunks on several task runs but report one
        task with aggregate progress and one result naming the three failures."""
        unknown = [f"ZZ{uuid.uuid4().hex[:6].upper()}{i}" for i in range(3)]
        symbols = _symbols("C", 1997) + unknown
        task_id = await client.submit("market-data", {"symbols": symbols, "period": "1mo"})
        status = await client.finished(task_id, within=110)
        assert status["state"] == "SUCCESS", status
        result = status["result"]
        assert result["requested"] == 2000
        assert result["fetched"] == 1997
        assert sorted(f["symbol"] for f in result["failed"]) == sorted(unknown)
        assert all(f["reason"] for f in result["failed"])
        assert "PROGRESS" in status["seen"]
        assert len(await _stored(pool, symbols)) == 1997
        helpers = await pool.fetchval(
            "SELECT count(*) FROM tasks WHERE name = 'fetch_market_data_chunk' "
            "AND params->>'job_id' = $1",
            task_id,
        )
        assert helpers >= 1

    async def test_cancel_stops_parent_and_helpers(
        self,
        client: Client,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        exchange_config: str,
        worker: ManagedProcess,
    ) -> None:
        """Cancelling a large fetch ends it REVOKED, and no chunk keeps writing afterwards."""
        async with http.put(f"{exchange_config}/_sim/config", json={"latency_ms": 100}) as resp:
            assert resp.status == 200
        symbols = _symbols("K", 1500)
        task_id = await client.submit("market-data", {"symbols": symbols, "period": "1mo"})
        deadline = time.monotonic() + 30
        while (await client.status(task_id))["state"] != "PROGRESS":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        status, _ = await client.call("DELETE", f"/api/v1/tasks/cancel/{task_id}")
        assert status in (200, 202)
        final = await client.finished(task_id, within=10)
        assert final["state"] == "REVOKED"
        await asyncio.sleep(1.0)
        settled = sum((await _stored(pool, symbols)).values())
        await asyncio.sleep(1.5)
        assert sum((await _stored(pool, symbols)).values()) == settled, worker.log_tail(12000)
        assert settled < 1500 * 23


class TestQuotesAndInfoTasks:
    async def test_update_prices_for_symbols(self, client: Client, pool: asyncpg.Pool) -> None:
        """update_portfolio_prices on a symbol list stores a latest quote per known symbol."""
        symbols = [*_symbols("Q", 5), "ZZQUOTE"]
        task_id = await client.submit("portfolio-prices", {"symbols": symbols})
        status = await client.finished(task_id, within=30)
        assert status["state"] == "SUCCESS", status
        assert status["result"]["updated"] == 5
        assert [f["symbol"] for f in status["result"]["failed"]] == ["ZZQUOTE"]
        count = await pool.fetchval(
            "SELECT count(*) FROM latest_quotes WHERE symbol = ANY($1::text[])", symbols
        )
        assert count == 5

    async def test_update_prices_without_holdings(self, client: Client) -> None:
        """A user without portfolios gets a successful refresh that updates nothing."""
        task_id = await client.submit("portfolio-prices", {})
        status = await client.finished(task_id, within=30)
        assert status["state"] == "SUCCESS", status
        assert status["result"] == {"requested": 0, "updated": 0, "failed": []}

    async def test_update_prices_for_held_assets(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser, pool: asyncpg.Pool
    ) -> None:
        """All of a user's portfolios: every symbol with an open position, once, and nothing
        sold out or held by someone else; another user's portfolio ids give nothing."""
        owner, other = await new_user(), await new_user()
        held, sold, foreign = _symbols("H", 3), _symbols("S", 1)[0], _symbols("O", 1)[0]
        portfolios = []
        for user, name in ((owner, "a"), (owner, "b"), (other, "c")):
            portfolios.append(
                await pool.fetchval(
                    "INSERT INTO portfolios (owner_id, name) VALUES ($1, $2) RETURNING id",
                    user.user_id,
                    f"{name}-{uuid.uuid4().hex[:6]}",
                )
            )
        rows = [
            (portfolios[0], "BUY", held[0], 10),
            (portfolios[0], "BUY", held[1], 5),
            (portfolios[1], "BUY", held[1], 1),
            (portfolios[1], "BUY", held[2], 2),
            (portfolios[1], "BUY", sold, 3),
            (portfolios[1], "SELL", sold, 3),
            (portfolios[2], "BUY", foreign, 7),
        ]
        await pool.executemany(
            "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price) "
            "VALUES ($1, $2, DATE '2026-01-05', $3, $4, 10)",
            rows,
        )
        mine = Client(http, api_url, owner.api_key)
        status = await mine.finished(await mine.submit("portfolio-prices", {}), within=30)
        assert status["state"] == "SUCCESS", status
        assert status["result"] == {"requested": 3, "updated": 3, "failed": []}
        quoted = await pool.fetch(
            "SELECT symbol FROM latest_quotes WHERE symbol = ANY($1::text[]) ORDER BY symbol",
            [*held, sold, foreign],
        )
        assert [r["symbol"] for r in quoted] == sorted(held)
        status = await mine.finished(
            await mine.submit("portfolio-prices", {"portfolio_ids": [portfolios[2]]}), within=30
        )
        assert status["result"]["requested"] == 0

    async def test_held_quantities_follow_stored_splits(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser, pool: asyncpg.Pool
    ) -> None:
        """After a 2:1 split of 10 shares, selling 15 leaves a position whose quote is
        refreshed, while selling all 20 leaves none."""
        owner = await new_user()
        still_held, sold_out = _symbols("SP", 2)
        portfolio = await pool.fetchval(
            "INSERT INTO portfolios (owner_id, name) VALUES ($1, 'split') RETURNING id",
            owner.user_id,
        )
        await pool.executemany(
            "INSERT INTO assets (symbol) VALUES ($1)", [(still_held,), (sold_out,)]
        )
        await pool.executemany(
            "INSERT INTO splits (symbol, date, numerator, denominator, source) "
            "VALUES ($1, DATE '2026-01-06', 2, 1, 'test')",
            [(still_held,), (sold_out,)],
        )
        await pool.executemany(
            "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price) "
            "VALUES ($1, $2, $3::date, $4, $5, 10)",
            [
                (portfolio, "BUY", date(2026, 1, 5), still_held, 10),
                (portfolio, "SELL", date(2026, 1, 7), still_held, 15),
                (portfolio, "BUY", date(2026, 1, 5), sold_out, 10),
                (portfolio, "SELL", date(2026, 1, 7), sold_out, 20),
            ],
        )
        mine = Client(http, api_url, owner.api_key)
        status = await mine.finished(await mine.submit("portfolio-prices", {}), within=30)
        assert status["state"] == "SUCCESS", status
        assert status["result"] == {"requested": 1, "updated": 1, "failed": []}
        quoted = await pool.fetchval(
            "SELECT array_agg(symbol) FROM latest_quotes WHERE symbol = ANY($1::text[])",
            [still_held, sold_out],
        )
        assert quoted == [still_held]

    async def test_fetch_asset_info(self, client: Client, pool: asyncpg.Pool) -> None:
        """fetch_asset_info stores the asset's reference data from quoteSummary."""
        (symbol,) = _symbols("I", 1)
        task_id = await client.submit("asset-info", {"symbol": symbol})
        status = await client.finished(task_id, within=30)
        assert status["state"] == "SUCCESS", status
        assert status["result"]["stored"] is True
        name = await pool.fetchval("SELECT name FROM assets WHERE symbol = $1", symbol)
        assert name == f"{symbol.title()} Holdings Inc."

    async def test_fetch_asset_info_fails_when_every_provider_fails(
        self, client: Client, pool: asyncpg.Pool
    ) -> None:
        """A symbol no provider knows ends the task FAILURE, once, with each provider's
        reason in its error, and stores nothing."""
        symbol = f"ZZ{uuid.uuid4().hex[:4].upper()}"  # the exchange knows no "ZZ…" symbol
        task_id = await client.submit("asset-info", {"symbol": symbol})
        status = await client.finished(task_id, within=30)
        assert status["state"] == "FAILURE", status
        assert status["result"] is None
        error = status["error"]
        assert error["type"] == "AssetInfoUnavailable"
        assert symbol in error["message"]
        assert "yahoo: " in error["message"]
        assert await pool.fetchval("SELECT attempts FROM tasks WHERE id = $1", task_id) == 1
        assert await pool.fetchval("SELECT count(*) FROM assets WHERE symbol = $1", symbol) == 0


async def _finished_row(pool: asyncpg.Pool, task_id: str, *, within: float) -> dict[str, Any]:
    """The registry row of `task_id` once it has ended."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = await pool.fetchrow("SELECT state, result, error FROM tasks WHERE id = $1", task_id)
        if row is not None and row["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return dict(row)
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish in {within} s")


class TestScheduledQuoteRefresh:
    async def test_every_held_symbol_is_refreshed_in_chunks(
        self, pool: asyncpg.Pool, settings: Settings
    ) -> None:
        """A scheduled-style refresh (no arguments, on the scheduled queue) of more held
        symbols than one chunk holds is fanned out to helper tasks, writes a quote for every
        held symbol and the benchmark, and counts requested = updated + failed, each unknown
        symbol failed with a reason."""
        known = _symbols("FAN", 2 * settings.market_data_chunk_size + 50)
        unknown = [f"ZZ{uuid.uuid4().hex[:6].upper()}{i}" for i in range(3)]
        owners = [await new_owner_id(pool) for _ in range(2)]
        portfolios = [
            await create_portfolio(pool, owner_id=owner, name=f"fan-{uuid.uuid4().hex[:6]}")
            for owner in owners
        ]
        # Half the known symbols are held in both portfolios: the refresh asks for each once.
        held = [(portfolios[0], s) for s in known] + [
            (portfolios[1], s) for s in known[: len(known) // 2] + unknown
        ]
        await pool.executemany(
            "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price) "
            "VALUES ($1, 'BUY', DATE '2026-11-02', $2, 1, 10)",
            held,
        )
        benchmark = settings.benchmark_symbol
        await pool.execute("DELETE FROM latest_quotes WHERE symbol = $1", benchmark)
        before = await pool.fetchval("SELECT clock_timestamp()")
        task_id = str(uuid.uuid4())
        publisher = create_publisher(settings)
        try:
            await publisher.publish(UpdatePortfolioPrices(), task_id=task_id, queue=QUEUE_SCHEDULED)
        finally:
            publisher.close()

        row = await _finished_row(pool, task_id, within=90)

        assert row["state"] == "SUCCESS", row["error"]
        result = row["result"]
        failed = {f["symbol"]: f["reason"] for f in result["failed"]}
        assert set(unknown) <= set(failed)
        assert all(failed[s] for s in unknown)
        assert failed.keys().isdisjoint(known)
        assert result["requested"] == result["updated"] + len(failed)
        assert result["requested"] >= len(known) + len(unknown) + 1
        quotes = {
            r["symbol"]: r["updated_at"]
            for r in await pool.fetch(
                "SELECT symbol, updated_at FROM latest_quotes WHERE symbol = ANY($1::text[])",
                [*known, *unknown, benchmark],
            )
        }
        assert set(quotes) == {*known, benchmark}
        assert all(updated > before for updated in quotes.values())
        helpers = await pool.fetchval(
            "SELECT count(*) FROM tasks WHERE name = 'fetch_market_data_chunk' "
            "AND params->>'job_id' = $1",
            task_id,
        )
        assert 1 <= helpers <= settings.market_data_max_helpers


class TestAssetsApi:
    async def test_asset_and_prices(self, client: Client) -> None:
        """After a fetch, the asset shows its fetch state and the prices come back as JSON
        numbers in date order, filtered by start and end."""
        (symbol,) = _symbols("R", 1)
        task_id = await client.submit("market-data", {"symbols": [symbol], "period": "1mo"})
        assert (await client.finished(task_id, within=30))["state"] == "SUCCESS"
        status, asset = await client.call("GET", f"/api/v1/assets/{symbol}")
        assert status == 200, asset
        assert asset["symbol"] == symbol
        assert asset["fetch_state"]["provider"] == "yahoo"
        assert asset["fetch_state"]["consecutive_failures"] == 0
        status, body = await client.call("GET", f"/api/v1/assets/{symbol.lower()}/prices")
        assert status == 200
        prices = body["prices"]
        assert body["symbol"] == symbol
        assert len(prices) > 15
        assert [p["date"] for p in prices] == sorted(p["date"] for p in prices)
        assert set(prices[0]) == {
            "date",
            "open",
            "high",
            "low",
            "close",
            "adj_close",
            "volume",
            "source",
        }
        assert isinstance(prices[0]["close"], float)
        middle = prices[len(prices) // 2]["date"]
        status, part = await client.call(
            "GET", f"/api/v1/assets/{symbol}/prices?start={middle}&end={middle}"
        )
        assert [p["date"] for p in part["prices"]] == [middle]

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("/api/v1/assets/ZZUNKNOWN", 404),
            ("/api/v1/assets/ZZUNKNOWN/prices", 404),
            ("/api/v1/assets/AAPL/prices?start=2024-13-01", 400),
            ("/api/v1/assets/AAPL/prices?start=2024-02-01&end=2024-01-01", 422),
            ("/api/v1/assets/$$$", 400),
        ],
    )
    async def test_problems(self, client: Client, path: str, status: int) -> None:
        """Unknown symbols are 404 and bad queries 400, both as problem details."""
        answer_status, problem = await client.call("GET", path)
        assert answer_status == status, problem
        assert problem["status"] == status

    async def test_needs_a_key(self, api_url: str, http: aiohttp.ClientSession) -> None:
        """The asset routes need an API key like every /api/v1 route."""
        async with http.get(f"{api_url}/api/v1/assets/AAPL") as response:
            assert response.status == 401
