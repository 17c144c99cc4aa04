"""Auto dividends through the real stack: API → worker fetch from the simulated exchange →
generated DIVIDEND transactions, following corrections, hand entries, trades, withdrawn
dividends and Polygon's pay dates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from service.core.users import IssuedKey
from tests.api_client import Api
from tests.conftest import PINNED_CLOCK, PINNED_TODAY
from tests.market_sim import Sim, failover, market_settings
from workers.market_data.auto_dividends import follow_dividends
from workers.market_data.fetch import ChunkFetcher
from workers.market_data.plan import Window
from workers.market_data.simulated_exchange.polygon import pay_date_for

pytestmark = pytest.mark.usefixtures("worker")
NewUser = Callable[..., Awaitable[IssuedKey]]
# The simulated exchange pays these a quarterly dividend (ex-dates early Feb, May, Aug, Nov)
# and never splits them; no other test module fetches them. One test edits the stored
# dividends of the first, so each test has its own.
CORRECTED = "DIVG"
TRADED = "DIVA"
WITHDRAWN = "DIVS"
PAID = "DIVP"
EX_DATES = [date(2026, 2, 2), date(2026, 5, 1), date(2026, 8, 3), date(2026, 11, 2)]


@pytest.fixture
async def api(api_url: str, http: aiohttp.ClientSession, new_user: NewUser) -> Api:
    return Api(http, api_url, (await new_user()).api_key)


async def _portfolio(api: Api, name: str, *, auto: bool) -> int:
    status, body, _ = await api.request(
        "POST", "/api/v1/portfolios", body={"name": name, "auto_dividends": auto}
    )
    assert status == 201, body
    assert body["auto_dividends"] is auto
    portfolio_id: int = body["id"]
    return portfolio_id


async def _tx(api: Api, portfolio_id: int, **fields: Any) -> dict[str, Any]:
    status, body, _ = await api.request(
        "POST", f"/api/v1/portfolios/{portfolio_id}/transactions", body=fields
    )
    assert status == 201, body
    return dict(body)


async def _fetch(api: Api, symbol: str, **window: str) -> None:
    status, answer = await api.submit(
        "market-data", {"symbols": [symbol], **(window or {"period": "1y"})}
    )
    assert status == 202, answer
    final = await api.wait_finished(answer["task_id"], within=60)
    assert final["state"] == "SUCCESS", final


async def _dividends(api: Api, portfolio_id: int) -> list[dict[str, Any]]:
    status, rows, _ = await api.request("GET", f"/api/v1/portfolios/{portfolio_id}/transactions")
    assert status == 200, rows
    return [row for row in rows if row["type"] == "DIVIDEND"]


async def _per_share(pool: asyncpg.Pool, symbol: str) -> dict[date, Decimal]:
    rows = await pool.fetch(
        "SELECT ex_date, amount FROM dividends WHERE symbol = $1 AND ex_date = ANY($2::date[])",
        symbol,
        EX_DATES,
    )
    return {row["ex_date"]: row["amount"] for row in rows}


def _generated(rows: list[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """date → (id, amount) of the generated dividends."""
    return {row["date"]: (row["id"], row["amount"]) for row in rows if row["generated"]}


async def _snapshot(pool: asyncpg.Pool, portfolio_id: int, day: date) -> None:
    await pool.execute(
        "INSERT INTO portfolio_snapshots (portfolio_id, date, total_value, market_value, cash, "
        "cost_basis, unrealized_pnl, realized_pnl, income, fees, net_invested, net_flow, "
        "day_change, holdings) VALUES ($1, $2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '[]')",
        portfolio_id,
        day,
    )


async def _snapshot_dates(pool: asyncpg.Pool, portfolio_id: int) -> list[date]:
    rows = await pool.fetch(
        "SELECT date FROM portfolio_snapshots WHERE portfolio_id = $1 ORDER BY date", portfolio_id
    )
    return [row["date"] for row in rows]


class TestAutoDividends:
    async def test_each_dividend_appears_once_and_follows_corrections(
        self, api: Api, pool: asyncpg.Pool
    ) -> None:
        """After a fetch every dividend of a held symbol is generated once, a re-run adds
        nothing, a hand-entered one is not doubled, a corrected amount updates the same row,
        a removed one goes, snapshots from the earliest change are dropped, and a portfolio
        without auto_dividends gets none."""
        auto = await _portfolio(api, "auto", auto=True)
        manual = await _portfolio(api, "manual", auto=False)
        for portfolio_id in (auto, manual):
            await _tx(
                api, portfolio_id, type="BUY", date="2026-01-15", symbol=CORRECTED, quantity=10,
                price=100,
            )  # fmt: skip

        await _fetch(api, CORRECTED)
        per_share = await _per_share(pool, CORRECTED)
        assert sorted(per_share) == EX_DATES
        first = _generated(await _dividends(api, auto))
        assert {day: amount for day, (_, amount) in first.items()} == {
            day.isoformat(): float(per_share[day] * 10) for day in EX_DATES
        }
        assert await _dividends(api, manual) == []

        await _fetch(api, CORRECTED)
        assert _generated(await _dividends(api, auto)) == first

        hand = await _tx(
            api, auto, type="DIVIDEND", date="2026-08-20", symbol=CORRECTED, amount=1000
        )
        after_hand = await _dividends(api, auto)
        assert "2026-08-03" not in _generated(after_hand)
        assert [row["id"] for row in after_hand if not row["generated"]] == [hand["id"]]

        for day in (date(2026, 1, 30), date(2026, 2, 3), date(2026, 6, 1)):
            await _snapshot(pool, auto, day)
        # What a provider correction and a withdrawn dividend leave in the table after a
        # re-fetch; both lie outside the incremental window, so the next fetch keeps them.
        await pool.execute(
            "UPDATE dividends SET amount = amount + 0.5 WHERE symbol = $1 AND ex_date = $2",
            CORRECTED,
            EX_DATES[0],
        )
        await pool.execute(
            "DELETE FROM dividends WHERE symbol = $1 AND ex_date = $2", CORRECTED, EX_DATES[1]
        )
        await _fetch(api, CORRECTED)
        corrected = _generated(await _dividends(api, auto))
        assert corrected == {
            "2026-02-02": (
                first["2026-02-02"][0],
                float((per_share[EX_DATES[0]] + Decimal("0.5")) * 10),
            ),
            "2026-11-02": first["2026-11-02"],
        }
        assert await _snapshot_dates(pool, auto) == [date(2026, 1, 30)]

    async def test_trades_and_the_switch_recompute_at_once(
        self, api: Api, pool: asyncpg.Pool
    ) -> None:
        """A sale before an ex-date recomputes that dividend in the same request, a generated
        dividend cannot be deleted by hand, and switching auto_dividends off removes the
        generated ones while on brings them back."""
        portfolio_id = await _portfolio(api, "trades", auto=True)
        await _tx(
            api, portfolio_id, type="BUY", date="2026-01-15", symbol=TRADED, quantity=10, price=100
        )
        await _fetch(api, TRADED)
        per_share = await _per_share(pool, TRADED)
        await _tx(
            api, portfolio_id, type="SELL", date="2026-08-03", symbol=TRADED, quantity=4, price=90
        )
        unchanged = _generated(await _dividends(api, portfolio_id))
        assert unchanged["2026-08-03"][1] == float(per_share[EX_DATES[2]] * 10)
        assert unchanged["2026-11-02"][1] == float(per_share[EX_DATES[3]] * 6)

        sold_before = await _tx(
            api, portfolio_id, type="SELL", date="2026-07-31", symbol=TRADED, quantity=1, price=90
        )
        recomputed = _generated(await _dividends(api, portfolio_id))
        assert recomputed["2026-08-03"] == (
            unchanged["2026-08-03"][0],
            float(per_share[EX_DATES[2]] * 9),
        )
        status, problem, _ = await api.request(
            "DELETE",
            f"/api/v1/portfolios/{portfolio_id}/transactions/{recomputed['2026-08-03'][0]}",
        )
        assert status == 409, problem
        status, _, _ = await api.request(
            "DELETE", f"/api/v1/portfolios/{portfolio_id}/transactions/{sold_before['id']}"
        )
        assert status == 204
        assert _generated(await _dividends(api, portfolio_id))["2026-08-03"][1] == float(
            per_share[EX_DATES[2]] * 10
        )

        status, body, _ = await api.request(
            "PATCH", f"/api/v1/portfolios/{portfolio_id}", body={"auto_dividends": False}
        )
        assert (status, body["auto_dividends"]) == (200, False), body
        assert await _dividends(api, portfolio_id) == []
        status, body, _ = await api.request(
            "PATCH", f"/api/v1/portfolios/{portfolio_id}", body={"auto_dividends": True}
        )
        assert status == 200, body
        assert sorted(_generated(await _dividends(api, portfolio_id))) == [
            day.isoformat() for day in EX_DATES
        ]

    async def test_patch_names_a_bad_field(self, api: Api) -> None:
        """A PATCH with a non-boolean (0 included: JSON booleans only) or unknown field is a
        400 problem naming it, and the portfolio stays as it was."""
        portfolio_id = await _portfolio(api, "bad patch", auto=False)
        for body, field in (
            ({"auto_dividends": "yes"}, "auto_dividends"),
            ({"auto_dividends": 1}, "auto_dividends"),
            ({"name": "x"}, "name"),
        ):
            status, problem, _ = await api.request(
                "PATCH", f"/api/v1/portfolios/{portfolio_id}", body=body
            )
            assert status == 400, problem
            assert field in str(problem), problem
        status, portfolio, _ = await api.request("GET", f"/api/v1/portfolios/{portfolio_id}")
        assert (status, portfolio["auto_dividends"]) == (200, False)


async def _stored(pool: asyncpg.Pool, symbol: str) -> dict[date, tuple[date | None, str]]:
    """ex-date → (pay date, source) of the stored dividends of `symbol`."""
    rows = await pool.fetch(
        "SELECT ex_date, pay_date, source FROM dividends WHERE symbol = $1", symbol
    )
    return {row["ex_date"]: (row["pay_date"], row["source"]) for row in rows}


class TestProviderChanges:
    async def test_a_withdrawn_dividend_goes_within_the_fetched_window_only(
        self, api: Api, pool: asyncpg.Pool, http: aiohttp.ClientSession, exchange: str
    ) -> None:
        """A dividend the exchange stops reporting is deleted, with its generated
        transaction, by the next fetch whose window covers it; one withdrawn before that
        window stays."""
        portfolio_id = await _portfolio(api, "withdrawn", auto=True)
        await _tx(
            api, portfolio_id, type="BUY", date="2026-01-15", symbol=WITHDRAWN, quantity=10,
            price=100,
        )  # fmt: skip
        await _fetch(api, WITHDRAWN, start="2026-01-01", end="2026-11-03")
        assert sorted(await _stored(pool, WITHDRAWN)) == EX_DATES
        assert sorted(_generated(await _dividends(api, portfolio_id))) == [
            day.isoformat() for day in EX_DATES
        ]

        withdrawn = {"withdrawn_dividends": {WITHDRAWN: ["2026-08-03", "2026-11-02"]}}
        async with http.put(f"{exchange}/_sim/config", json=withdrawn) as response:
            assert response.status == 200, await response.text()
        try:
            # Stored through 2026-11-03: this fetch covers 2026-10-29 (5 days' overlap) on.
            await _fetch(api, WITHDRAWN, start="2026-01-01")
        finally:
            async with http.put(f"{exchange}/_sim/config", json={}) as response:
                assert response.status == 200, await response.text()
        assert sorted(await _stored(pool, WITHDRAWN)) == EX_DATES[:3]
        assert sorted(_generated(await _dividends(api, portfolio_id))) == [
            day.isoformat() for day in EX_DATES[:3]
        ]

    @pytest.mark.usefixtures("clean_exchange")
    async def test_generated_dividends_land_on_polygons_pay_date(
        self,
        api: Api,
        pool: asyncpg.Pool,
        sim: Sim,
        base_env: dict[str, str],
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
    ) -> None:
        """Dividends fetched from Polygon store its pay date and are generated on it, and a
        later fetch of the same dividend from Yahoo, which has no pay date, keeps it."""
        portfolio_id = await _portfolio(api, "paid", auto=True)
        await _tx(
            api, portfolio_id, type="BUY", date="2026-01-15", symbol=PAID, quantity=10, price=100
        )

        async def fetch(provider: str, wanted: Window) -> None:
            settings = market_settings(base_env, sim.url, MARKET_DATA_PROVIDERS=provider)
            fetcher = ChunkFetcher(
                pool=pool,
                failover=failover(settings, session=http, redis=redis_client),
                overlap_days=settings.market_data_overlap_days,
                clock=PINNED_CLOCK,
            )
            result = await fetcher.run([PAID], wanted)
            assert (result.fetched, result.failed) == (1, [])
            await follow_dividends(pool, symbols=[PAID], today=PINNED_TODAY, retry_seconds=0)

        await fetch("polygon", Window(date(2026, 1, 1), date(2026, 11, 3)))
        paid_on = {day: pay_date_for(day) for day in EX_DATES}
        assert await _stored(pool, PAID) == {day: (paid_on[day], "polygon") for day in EX_DATES}
        assert all(paid_on[day] > day for day in EX_DATES)
        generated = _generated(await _dividends(api, portfolio_id))
        assert sorted(generated) == [paid_on[day].isoformat() for day in EX_DATES]

        # Stored through 2026-11-03, so Yahoo answers for 2026-10-29 on: the 2026-11-02 one.
        await fetch("yahoo", Window(date(2026, 1, 1), PINNED_TODAY))
        stored = await _stored(pool, PAID)
        assert stored[EX_DATES[3]] == (paid_on[EX_DATES[3]], "yahoo")
        assert _generated(await _dividends(api, portfolio_id)) == generated
