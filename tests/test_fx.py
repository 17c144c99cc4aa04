"""A USD portfolio holding a EUR-quoted asset, end to end: API → worker → simulated exchange
→ Postgres, valued at the asset's EUR close times that day's stored EURUSD close."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

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
        async with api.session.get(
            f"{api.base_url}/api/v1/portfolios/{portfolio_id}/transactions?format=csv",
            headers=api.headers(),
        ) as response:
            assert response.status == 200
            exported = await response.text()
        status, again, _ = await api.request(
            "POST", path, raw=exported.encode(), headers={"Content-Type": "text/csv"}
        )
        assert (status, again) == (200, {"imported": 0, "duplicates": 3})
