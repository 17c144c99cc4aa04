"""A USD portfolio holding a EUR-quoted asset, end to end: API → worker → simulated exchange
→ Postgres, valued at the asset's EUR close times that day's stored EURUSD close."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
from celery import Celery
from celery.result import AsyncResult

from service.core.celery_config import create_celery_app
from service.core.settings import Settings
from service.core.users import IssuedKey
from tests.api_client import Api
from tests.conftest import PINNED_LAST_SESSION

pytestmark = pytest.mark.usefixtures("worker")
NewUser = Callable[..., Awaitable[IssuedKey]]
START, BUY_DAY, END = date(2026, 10, 1), date(2026, 11, 3), PINNED_LAST_SESSION


async def _close(pool: asyncpg.Pool, symbol: str, day: date) -> Decimal:
    close: Decimal | None = await pool.fetchval(
        "SELECT close FROM daily_prices WHERE symbol = $1 AND date = $2", symbol, day
    )
    assert close is not None, f"no stored close of {symbol} on {day}"
    return close


async def _export(api: Api, portfolio_id: int) -> str:
    async with api.session.get(
        f"{api.base_url}/api/v1/portfolios/{portfolio_id}/transactions?format=csv",
        headers=api.headers(),
    ) as response:
        assert response.status == 200
        return await response.text()


async def _import(api: Api, portfolio_id: int, text: str) -> dict[str, Any]:
    status, answer, _ = await api.request(
        "POST",
        f"/api/v1/portfolios/{portfolio_id}/transactions/import",
        raw=text.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


EURUSD_GAP = (date(2026, 11, 9), END)


async def _delete_eurusd_gap(pool: asyncpg.Pool) -> dict[date, Decimal]:
    """Delete the stored EURUSD closes of EURUSD_GAP (7 sessions); the closes deleted."""
    deleted = {
        row["date"]: row["close"]
        for row in await pool.fetch(
            "DELETE FROM daily_prices WHERE symbol = 'EURUSD=X' AND date BETWEEN $1 AND $2 "
            "RETURNING date, close",
            *EURUSD_GAP,
        )
    }
    assert len(deleted) == 7
    return deleted


async def _fetched_again(
    pool: asyncpg.Pool, celery_client: Celery, task_id: str, deleted: dict[date, Decimal]
) -> None:
    """The fetch `task_id` succeeds and stores the `deleted` closes again."""
    fetch = AsyncResult(task_id, app=celery_client)
    fetched = await asyncio.to_thread(fetch.get, timeout=120)
    assert fetch.state == "SUCCESS"
    assert fetched["failed"] == []
    restored = await pool.fetch(
        "SELECT date, close FROM daily_prices WHERE symbol = 'EURUSD=X' AND date BETWEEN $1 AND $2",
        *EURUSD_GAP,
    )
    assert {row["date"]: row["close"] for row in restored} == deleted


@pytest.fixture(scope="module")
def celery_client(settings: Settings) -> Iterator[Celery]:
    """A publishing-only Celery app, as the API uses, to follow a worker-published task."""
    app = create_celery_app(settings)
    yield app
    app.close()


async def _run(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await api.submit(path, body)
    assert status == 202, answer
    finished = await api.wait_finished(answer["task_id"], within=120)
    assert finished["state"] == "SUCCESS", finished
    return finished


@pytest.fixture
async def eur_holding(
    api_url: str, http: aiohttp.ClientSession, new_user: NewUser
) -> tuple[Api, int, str]:
    """A USD portfolio that deposited 10,000 USD and bought 10 shares of a EUR-quoted asset
    at 50 EUR, with the asset's history fetched (which fetches EURUSD=X too)."""
    api = Api(http, api_url, (await new_user()).api_key)
    symbol = f"FX{uuid.uuid4().hex[:4].upper()}.DE"
    status, portfolio, _ = await api.request(
        "POST", "/api/v1/portfolios", body={"name": "euro", "base_currency": "USD"}
    )
    assert status == 201, portfolio
    await _run(
        api,
        "market-data",
        {"symbols": [symbol], "start": START.isoformat(), "end": END.isoformat()},
    )
    base = f"/api/v1/portfolios/{portfolio['id']}/transactions"
    status, _, _ = await api.request(
        "POST", base, body={"type": "DEPOSIT", "date": "2026-11-02", "amount": 10000}
    )
    assert status == 201
    status, bought, _ = await api.request(
        "POST",
        base,
        body={
            "type": "BUY",
            "date": BUY_DAY.isoformat(),
            "symbol": symbol,
            "quantity": 10,
            "price": 50,
        },
    )
    assert status == 201, bought
    return api, portfolio["id"], symbol


class TestEuroAssetInUsdPortfolio:
    async def test_buy_books_the_trade_dates_rate(
        self, eur_holding: tuple[Api, int, str], pool: asyncpg.Pool
    ) -> None:
        """The fetch stores the asset's currency, and a buy without fx_rate is recorded in it
        at the trade date's stored EURUSD close, and cash falls by its USD amount."""
        api, portfolio_id, symbol = eur_holding
        status, prices, _ = await api.request("GET", f"/api/v1/assets/{symbol}/prices")
        assert (status, prices["currency"]) == (200, "EUR")
        rate = await _close(pool, "EURUSD=X", BUY_DAY)
        assert Decimal("0.9") < rate < Decimal("1.3")
        status, listed, _ = await api.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/transactions"
        )
        assert status == 200
        buy = listed[-1]
        assert (buy["currency"], buy["fx_rate"]) == ("EUR", float(rate))
        status, holdings, _ = await api.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/holdings?as_of={BUY_DAY}"
        )
        assert status == 200
        assert holdings["cash"] == pytest.approx(float(10000 - 500 * rate), abs=1e-6)

    async def test_holdings_snapshots_and_performance_use_that_days_rate(
        self, eur_holding: tuple[Api, int, str], pool: asyncpg.Pool
    ) -> None:
        """Holdings, snapshots and performance value the position at the EUR close times the
        same day's EURUSD close, in USD, with the asset's price in EUR."""
        api, portfolio_id, symbol = eur_holding
        buy_rate = await _close(pool, "EURUSD=X", BUY_DAY)
        cash = 10000 - 500 * buy_rate
        close, rate = await _close(pool, symbol, END), await _close(pool, "EURUSD=X", END)
        expected = 10 * close * rate

        status, holdings, _ = await api.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/holdings?as_of={END}"
        )
        assert status == 200
        (row,) = holdings["holdings"]
        assert holdings["currency"] == "USD"
        assert holdings["missing_fx"] == []
        assert (row["currency"], row["close"], row["fx_rate"]) == ("EUR", float(close), float(rate))
        assert row["market_value"] == pytest.approx(float(expected), abs=1e-6)
        assert holdings["total_value"] == pytest.approx(float(expected + cash), abs=1e-6)

        await _run(
            api,
            "portfolio-snapshot",
            {"portfolio_ids": [portfolio_id], "start": BUY_DAY.isoformat(), "end": END.isoformat()},
        )
        snapshot = await pool.fetchrow(
            "SELECT market_value, total_value, cash, holdings FROM portfolio_snapshots "
            "WHERE portfolio_id = $1 AND date = $2",
            portfolio_id,
            END,
        )
        assert snapshot is not None
        assert snapshot["market_value"] == pytest.approx(expected, abs=Decimal("0.000001"))
        assert snapshot["cash"] == pytest.approx(cash, abs=Decimal("0.000001"))

        finished = await _run(
            api,
            "portfolio-performance",
            {"portfolio_id": portfolio_id, "start": BUY_DAY.isoformat(), "end": END.isoformat()},
        )
        status, performance, _ = await api.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/performance"
        )
        assert status == 200, finished
        assert performance["currency"] == "USD"
        assert set(performance["unavailable"]) <= {"beta", "correlation"}  # no benchmark here
        first = await pool.fetchval(
            "SELECT total_value FROM portfolio_snapshots WHERE portfolio_id = $1 AND date = $2",
            portfolio_id,
            BUY_DAY,
        )
        growth = float(snapshot["total_value"] / first) - 1
        assert performance["metrics"]["twr"] == pytest.approx(growth, rel=1e-6)

    async def test_reimporting_foreign_rows_adds_nothing(
        self, eur_holding: tuple[Api, int, str], pool: asyncpg.Pool
    ) -> None:
        """A CSV row for a EUR asset without a currency column is stored in EUR at the trade
        date's rate, and importing the same file again (or the portfolio's own export) is
        counted as duplicates, not booked twice."""
        api, portfolio_id, symbol = eur_holding
        path = f"/api/v1/portfolios/{portfolio_id}/transactions/import"
        csv_text = f"date,type,symbol,quantity,price\n2026-11-04,BUY,{symbol},2,51\n"
        answers = []
        for _ in range(2):
            status, answer, _ = await api.request(
                "POST", path, raw=csv_text.encode(), headers={"Content-Type": "text/csv"}
            )
            assert status == 200, answer
            answers.append(answer)
        assert answers == [{"imported": 1, "duplicates": 0}, {"imported": 0, "duplicates": 1}]
        stored = await pool.fetchrow(
            "SELECT currency, fx_rate FROM transactions "
            "WHERE portfolio_id = $1 AND date = '2026-11-04'",
            portfolio_id,
        )
        assert stored is not None
        assert (stored["currency"], stored["fx_rate"]) == (
            "EUR",
            await _close(pool, "EURUSD=X", date(2026, 11, 4)),
        )
        exported = await _export(api, portfolio_id)
        status, again, _ = await api.request(
            "POST", path, raw=exported.encode(), headers={"Content-Type": "text/csv"}
        )
        assert (status, again) == (200, {"imported": 0, "duplicates": 3})

    async def test_export_import_keeps_the_booked_rate(
        self, eur_holding: tuple[Api, int, str], pool: asyncpg.Pool
    ) -> None:
        """A EUR buy booked at a given rate unlike the stored one exports with it, imports
        into a fresh USD portfolio at that rate (exporting the same bytes), and the export
        imported into the original adds nothing."""
        api, portfolio_id, symbol = eur_holding
        day = date(2026, 11, 5)
        given = await _close(pool, "EURUSD=X", day) + Decimal("0.0123")
        status, bought, _ = await api.request(
            "POST",
            f"/api/v1/portfolios/{portfolio_id}/transactions",
            body={
                "type": "BUY",
                "date": day.isoformat(),
                "symbol": symbol,
                "quantity": 3,
                "price": 52,
                "fx_rate": str(given),
            },
        )
        assert status == 201, bought
        first = await _export(api, portfolio_id)
        assert f"\n{day},BUY,{symbol},3,52,,0,EUR,,{given.normalize():f}\n" in first
        status, copy, _ = await api.request(
            "POST", "/api/v1/portfolios", body={"name": "copy", "base_currency": "USD"}
        )
        assert status == 201, copy
        assert await _import(api, copy["id"], first) == {"imported": 3, "duplicates": 0}
        assert await _export(api, copy["id"]) == first
        booked = await pool.fetchval(
            "SELECT fx_rate FROM transactions WHERE portfolio_id = $1 AND date = $2",
            copy["id"],
            day,
        )
        assert booked == given
        assert await _import(api, portfolio_id, first) == {"imported": 0, "duplicates": 3}

    async def test_performance_fetches_the_rates_it_lacks(
        self, eur_holding: tuple[Api, int, str], pool: asyncpg.Pool, celery_client: Celery
    ) -> None:
        """A performance run meeting deleted EURUSD closes lists them in `missing_fx` and
        publishes a fetch of EURUSD=X that succeeds and stores them again."""
        api, portfolio_id, _ = eur_holding
        deleted = await _delete_eurusd_gap(pool)
        finished = await _run(
            api,
            "portfolio-performance",
            {"portfolio_id": portfolio_id, "start": BUY_DAY.isoformat(), "end": END.isoformat()},
        )
        result = finished["result"]
        # The first days of the gap still carry the 2026-11-06 close (at most 4 days old).
        assert result["missing_fx"] == [f"EURUSD 2026-11-{day}" for day in (11, 12, 13, 16, 17)]
        (performance,) = result["results"]
        assert performance["unavailable"]["twr"].startswith("missing_fx: ['EURUSD 2026-11-11'")
        await _fetched_again(pool, celery_client, result["fx_fetch_task_id"], deleted)

    async def test_a_report_lists_and_fetches_the_rates_it_lacks(
        self, eur_holding: tuple[Api, int, str], pool: asyncpg.Pool, celery_client: Celery
    ) -> None:
        """A report meeting deleted EURUSD closes names them in its result and its body, and
        publishes a fetch of EURUSD=X that stores them again."""
        api, portfolio_id, _ = eur_holding
        deleted = await _delete_eurusd_gap(pool)
        finished = await _run(
            api, "portfolio-report", {"portfolio_id": portfolio_id, "days": 30, "format": "json"}
        )
        result = finished["result"]
        # The report runs to today (the 18th), which the last rate before the gap misses too.
        missing = [f"EURUSD 2026-11-{day}" for day in (11, 12, 13, 16, 17, 18)]
        assert result["missing_fx"] == missing
        status, report, _ = await api.request("GET", f"/api/v1/reports/{result['report_id']}")
        assert status == 200, report
        assert report["missing_fx"] == result["missing_fx"]
        assert report["performance"]["unavailable"]["twr"].startswith("missing_fx: ")
        await _fetched_again(pool, celery_client, result["fx_fetch_task_id"], deleted)


class TestFetchReportsPairsApart:
    async def test_pairs_come_along_but_requested_counts_the_callers_symbols(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser
    ) -> None:
        """A fetch of one EUR-quoted symbol also fetches EURUSD=X (a USD portfolio exists)
        and reports it under `fx_pairs`; `requested` stays the one symbol asked for."""
        api = Api(http, api_url, (await new_user()).api_key)
        status, _, _ = await api.request(
            "POST", "/api/v1/portfolios", body={"name": "usd", "base_currency": "USD"}
        )
        assert status == 201
        symbol = f"FP{uuid.uuid4().hex[:4].upper()}.DE"
        finished = await _run(
            api,
            "market-data",
            {"symbols": [symbol], "start": START.isoformat(), "end": END.isoformat()},
        )
        result = finished["result"]
        assert (result["requested"], result["fetched"], result["failed"]) == (1, 1, [])
        assert "EURUSD=X" in result["fx_pairs"]["requested"]
        assert result["fx_pairs"]["failed"] == []
