"""The portfolio API through the real app: owner scoping, validation, holdings, results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.core.users import IssuedKey
from tests.api_client import Api
from tests.conftest import PINNED_CLOCK
from tests.portfolio_data import put_closes
from workers.demo_seed import seed_demo_portfolios

NewUser = Callable[..., Awaitable[IssuedKey]]


@pytest.fixture
async def alice(api_url: str, http: aiohttp.ClientSession, new_user: NewUser) -> Api:
    return Api(http, api_url, (await new_user()).api_key)


@pytest.fixture
async def bob(api_url: str, http: aiohttp.ClientSession, new_user: NewUser) -> Api:
    return Api(http, api_url, (await new_user()).api_key)


async def _portfolio(api: Api, name: str = "main") -> int:
    status, body, _ = await api.request("POST", "/api/v1/portfolios", body={"name": name})
    assert status == 201, body
    portfolio_id: int = body["id"]
    return portfolio_id


async def _tx(api: Api, portfolio_id: int, **fields: Any) -> tuple[int, Any]:
    status, body, _ = await api.request(
        "POST", f"/api/v1/portfolios/{portfolio_id}/transactions", body=fields
    )
    return status, body


class TestPortfolios:
    async def test_create_list_get_delete(self, alice: Api) -> None:
        """A created portfolio is listed, fetched and deleted; a duplicate name is 409."""
        portfolio_id = await _portfolio(alice, "growth")
        status, listed, _ = await alice.request("GET", "/api/v1/portfolios")
        assert status == 200
        assert [(p["id"], p["name"], p["base_currency"]) for p in listed] == [
            (portfolio_id, "growth", "USD")
        ]
        status, _, _ = await alice.request("POST", "/api/v1/portfolios", body={"name": "growth"})
        assert status == 409
        status, _, _ = await alice.request("DELETE", f"/api/v1/portfolios/{portfolio_id}")
        assert status == 204
        status, _, _ = await alice.request("GET", f"/api/v1/portfolios/{portfolio_id}")
        assert status == 404

    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("DELETE", "", None),
            ("GET", "/transactions", None),
            ("POST", "/transactions", {"type": "DEPOSIT", "date": "2024-01-02", "amount": 5}),
            ("GET", "/holdings", None),
            ("GET", "/snapshots", None),
            ("GET", "/performance", None),
        ],
    )
    async def test_someone_elses_portfolio_is_404(
        self, alice: Api, bob: Api, method: str, suffix: str, body: Any
    ) -> None:
        """Every route answers 404 for another user's portfolio and leaves it untouched."""
        portfolio_id = await _portfolio(alice)
        status, problem, _ = await bob.request(
            method, f"/api/v1/portfolios/{portfolio_id}{suffix}", body=body
        )
        assert status == 404
        assert problem["detail"] == f"no portfolio {portfolio_id}"
        status, _, _ = await alice.request("GET", f"/api/v1/portfolios/{portfolio_id}")
        assert status == 200

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v1/portfolios/502015972163067526471267385344"),
            ("DELETE", "/api/v1/portfolios/1/transactions/35011098804291850953818112"),
            ("GET", "/api/v1/reports/99999999999999999999"),
        ],
    )
    async def test_ids_beyond_bigint_are_client_errors(
        self, alice: Api, method: str, path: str
    ) -> None:
        """An id too large for the database is a 400, never a server error."""
        status, problem, _ = await alice.request(method, path)
        assert status == 400, problem

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": ""}, "name"),
            ({"name": "x", "base_currency": "usd"}, "base_currency"),
            ({"name": "x", "colour": "red"}, "colour"),
        ],
    )
    async def test_invalid_portfolio_is_400(self, alice: Api, body: Any, field: str) -> None:
        """Invalid bodies answer 400 problem details naming the field."""
        status, problem, _ = await alice.request("POST", "/api/v1/portfolios", body=body)
        assert status == 400
        assert field in [e["field"] for e in problem["errors"]]


class TestTransactions:
    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"type": "BUY", "date": "2024-01-02", "quantity": 1, "price": 1}, "symbol"),
            (
                {"type": "BUY", "date": "2024-01-02", "symbol": "A", "quantity": 0, "price": 1},
                "quantity",
            ),
            (
                {"type": "SELL", "date": "2024-01-02", "symbol": "A", "quantity": 1, "price": -1},
                "price",
            ),
            ({"type": "DEPOSIT", "date": "2024-01-02", "amount": 0}, "amount"),
            ({"type": "DEPOSIT", "date": "2024-01-02"}, "amount"),
            ({"type": "DIVIDEND", "date": "2024-01-02", "amount": 3}, "symbol"),
            ({"type": "DEPOSIT", "date": "2024-01-02", "amount": 3, "quantity": 1}, "quantity"),
            ({"type": "GIFT", "date": "2024-01-02", "amount": 3}, "type"),
            ({"type": "FEE", "date": "2024-01-02", "amount": 3, "fee": -1}, "fee"),
            (
                {"type": "BUY", "date": "2024-01-02", "symbol": "A", "quantity": 1e-11, "price": 1},
                "quantity",
            ),
            ({"type": "DEPOSIT", "date": "2024-01-02", "amount": 0.0000001}, "amount"),
            ({"type": "DEPOSIT", "date": "2024-01-02", "amount": 1, "fee": 0.1234567}, "fee"),
            (
                {
                    "type": "BUY",
                    "date": "2024-01-02",
                    "symbol": "A",
                    "quantity": 1,
                    "price": 1.5e-7,
                },
                "price",
            ),
        ],
    )
    async def test_required_fields_per_type(
        self, alice: Api, fields: dict[str, Any], field: str
    ) -> None:
        """Each type's required fields and ranges are enforced naming the field: 400 for an
        unknown type (the schema states the types), 422 for the rules per type (prose only)."""
        status, problem = await _tx(alice, await _portfolio(alice), **fields)
        assert status == (400 if field == "type" else 422), problem
        assert field in [e["field"] for e in problem["errors"]]

    async def test_overselling_is_refused(self, alice: Api) -> None:
        """A sell of more than is held, or deleting the buy it relies on, answers 422."""
        portfolio_id = await _portfolio(alice)
        status, buy = await _tx(
            alice, portfolio_id, type="BUY", date="2024-01-02", symbol="APIA", quantity=5, price=10
        )
        assert status == 201
        status, problem = await _tx(
            alice, portfolio_id, type="SELL", date="2024-01-03", symbol="APIA", quantity=6, price=1
        )
        assert status == 422
        assert "only 5 held" in problem["detail"]
        await _tx(
            alice, portfolio_id, type="SELL", date="2024-01-03", symbol="APIA", quantity=5, price=1
        )
        status, problem, _ = await alice.request(
            "DELETE", f"/api/v1/portfolios/{portfolio_id}/transactions/{buy['id']}"
        )
        assert status == 422

    async def test_foreign_asset_without_a_rate_is_refused(
        self, alice: Api, pool: asyncpg.Pool
    ) -> None:
        """Buying an asset quoted in another currency with no rate given or stored answers 422
        naming fx_rate, never a silent 1.0; with fx_rate it is recorded in the asset's
        currency."""
        await put_closes(pool, "APIEUR", {date(2024, 1, 2): 10.0}, currency="EUR")
        portfolio = await _portfolio(alice)
        status, problem = await _tx(
            alice,
            portfolio,
            type="BUY",
            date="2024-01-02",
            symbol="apieur",
            quantity=1,
            price=10,
        )
        assert status == 422
        assert problem["detail"].startswith("fx_rate: no stored EURUSD rate")
        status, recorded = await _tx(
            alice,
            portfolio,
            type="BUY",
            date="2024-01-02",
            symbol="apieur",
            quantity=1,
            price=10,
            fx_rate=1.1,
        )
        assert status == 201
        assert (recorded["currency"], recorded["fx_rate"]) == ("EUR", 1.1)

    async def test_numbers_round_trip_and_same_date_order(self, alice: Api) -> None:
        """Money comes back as JSON numbers exactly; same-date transactions list in recorded
        order."""
        portfolio_id = await _portfolio(alice)
        await _tx(alice, portfolio_id, type="DEPOSIT", date="2024-01-03", amount=100.25)
        await _tx(alice, portfolio_id, type="DEPOSIT", date="2024-01-02", amount=0.1)
        await _tx(alice, portfolio_id, type="WITHDRAWAL", date="2024-01-03", amount=50.5)
        status, listed, _ = await alice.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/transactions"
        )
        assert status == 200
        assert [(t["type"], t["date"], t["amount"]) for t in listed] == [
            ("DEPOSIT", "2024-01-02", 0.1),
            ("DEPOSIT", "2024-01-03", 100.25),
            ("WITHDRAWAL", "2024-01-03", 50.5),
        ]


class TestHoldingsAndResults:
    async def test_holdings_value_at_last_close(self, alice: Api, pool: asyncpg.Pool) -> None:
        """Holdings replay the transactions and value them at the last close; an unpriced
        position makes the totals null rather than zero."""
        await put_closes(pool, "APIH1", {date(2024, 1, 2): 10.0, date(2024, 1, 5): 12.5})
        portfolio_id = await _portfolio(alice)
        await _tx(alice, portfolio_id, type="DEPOSIT", date="2024-01-02", amount=1000)
        await _tx(
            alice,
            portfolio_id,
            type="BUY",
            date="2024-01-02",
            symbol="APIH1",
            quantity=40,
            price=10,
            fee=2,
        )
        path = f"/api/v1/portfolios/{portfolio_id}/holdings?as_of=2024-01-08"
        status, holdings, _ = await alice.request("GET", path)
        assert status == 200
        assert (holdings["cash"], holdings["market_value"], holdings["total_value"]) == (
            598.0,
            500.0,
            1098.0,
        )
        position = holdings["holdings"][0]
        assert (position["price_date"], position["average_cost"], position["unrealized_pnl"]) == (
            "2024-01-05",
            10.05,
            98.0,
        )
        await _tx(
            alice,
            portfolio_id,
            type="BUY",
            date="2024-01-03",
            symbol="APINOPRICE",
            quantity=1,
            price=1,
        )
        status, holdings, _ = await alice.request("GET", path)
        assert holdings["total_value"] is None
        assert holdings["missing_prices"] == ["APINOPRICE"]

    async def test_repeated_polls_follow_every_input(self, alice: Api, pool: asyncpg.Pool) -> None:
        """Polling holdings again answers the same until an input changes: a new close, a
        split stored later and a new transaction each show on the next poll (the API keeps
        the replayed ledger between polls)."""
        await put_closes(pool, "APIH2", {date(2024, 2, 1): 20.0})
        portfolio_id = await _portfolio(alice)
        await _tx(alice, portfolio_id, type="DEPOSIT", date="2024-02-01", amount=1000)
        await _tx(
            alice,
            portfolio_id,
            type="BUY",
            date="2024-02-01",
            symbol="APIH2",
            quantity=10,
            price=20,
        )
        path = f"/api/v1/portfolios/{portfolio_id}/holdings?as_of=2024-02-09"
        first = (await alice.request("GET", path))[1]
        assert (await alice.request("GET", path))[1] == first
        assert first["market_value"] == 200.0
        await put_closes(pool, "APIH2", {date(2024, 2, 8): 25.0})
        holdings = (await alice.request("GET", path))[1]
        assert holdings["market_value"] == 250.0
        await pool.execute(
            "INSERT INTO splits (symbol, date, numerator, denominator, source) "
            "VALUES ('APIH2', $1, 2, 1, 'test')",
            date(2024, 2, 5),
        )
        holdings = (await alice.request("GET", path))[1]
        assert holdings["holdings"][0]["quantity"] == 20.0
        await _tx(
            alice,
            portfolio_id,
            type="SELL",
            date="2024-02-09",
            symbol="APIH2",
            quantity=5,
            price=25,
        )
        holdings = (await alice.request("GET", path))[1]
        assert holdings["holdings"][0]["quantity"] == 15.0

    async def test_holdings_today_use_a_fresher_quote_and_flag_stale_prices(
        self, alice: Api, pool: asyncpg.Pool
    ) -> None:
        """On the pinned Wednesday at 15:00, a position with a quote from 14:30 is valued at
        it; one whose last close is Monday's (Tuesday's session completed without it) is
        valued at that close and flagged stale; the totals name the oldest price time."""
        fresh, behind = "APIQFRESH", "APIQSTALE"
        await put_closes(pool, fresh, {date(2026, 11, 17): 20.0})
        await put_closes(pool, behind, {date(2026, 11, 16): 30.0})
        await pool.execute(
            "INSERT INTO latest_quotes (symbol, price, market_time, source) "
            "VALUES ($1, 21.5, '2026-11-18T14:30:00-05:00', 'test') "
            "ON CONFLICT (symbol) DO UPDATE SET price = excluded.price, "
            "market_time = excluded.market_time",
            fresh,
        )
        portfolio_id = await _portfolio(alice, "fresh")
        await _tx(alice, portfolio_id, type="DEPOSIT", date="2026-11-02", amount=1000)
        for symbol in (fresh, behind):
            await _tx(
                alice,
                portfolio_id,
                type="BUY",
                date="2026-11-02",
                symbol=symbol,
                quantity=2,
                price=10,
            )
        status, holdings, _ = await alice.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/holdings"
        )
        assert status == 200, holdings
        shown = {
            h["symbol"]: (h["price"], h["price_source"], h["price_time"], h["stale"])
            for h in holdings["holdings"]
        }
        assert shown == {
            fresh: (21.5, "quote", "2026-11-18T19:30:00Z", False),
            behind: (30.0, "close", "2026-11-16T21:00:00Z", True),
        }
        assert holdings["stale_prices"] == [behind]
        assert holdings["price_time"] == "2026-11-16T21:00:00Z"
        assert holdings["total_value"] == 1000 - 40 + 2 * 21.5 + 2 * 30

    async def test_split_stored_later_that_breaks_the_history_is_409(
        self, alice: Api, pool: asyncpg.Pool
    ) -> None:
        """A reverse split stored after a sell was accepted makes that sell impossible: holdings
        answer a 409 problem naming it, not a 500."""
        await put_closes(pool, "APIRS1", {date(2024, 1, 2): 10.0})
        portfolio_id = await _portfolio(alice)
        for fields in (
            {"type": "BUY", "date": "2024-01-02", "quantity": 100, "price": 10},
            {"type": "SELL", "date": "2024-01-10", "quantity": 50, "price": 10},
        ):
            status, body = await _tx(alice, portfolio_id, symbol="APIRS1", **fields)
            assert status == 201, body
        await pool.execute(
            "INSERT INTO splits (symbol, date, numerator, denominator, source) "
            "VALUES ('APIRS1', '2024-01-05', 1, 10, 'test')"
        )
        status, problem, _ = await alice.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/holdings?as_of=2024-01-12"
        )
        assert status == 409, problem
        assert "cannot sell 50 APIRS1 on 2024-01-10: only 10 held" in problem["detail"]

    async def test_performance_204_until_computed_and_report_scoped(
        self, alice: Api, bob: Api, pool: asyncpg.Pool
    ) -> None:
        """Performance of a new portfolio is 204 with no body (it exists; nothing is computed
        yet), someone else's is 404; a report is served with its media type to its owner only."""
        portfolio_id = await _portfolio(alice)
        async with alice.session.get(
            f"{alice.base_url}/api/v1/portfolios/{portfolio_id}/performance",
            headers=alice.headers(),
        ) as response:
            assert response.status == 204
            assert await response.read() == b""
        status, _, _ = await bob.request("GET", f"/api/v1/portfolios/{portfolio_id}/performance")
        assert status == 404
        report_id = await pool.fetchval(
            "INSERT INTO portfolio_reports (portfolio_id, task_id, format, start_date, end_date, "
            "body) VALUES ($1, $2, 'html', '2024-01-02', '2024-02-02', '<p>hi</p>') RETURNING id",
            portfolio_id,
            f"api-test-{portfolio_id}",
        )
        async with alice.session.get(
            f"{alice.base_url}/api/v1/reports/{report_id}", headers=alice.headers()
        ) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert await response.text() == "<p>hi</p>"
        status, _, _ = await bob.request("GET", f"/api/v1/reports/{report_id}")
        assert status == 404


async def _demo_portfolio(pool: asyncpg.Pool, owner: IssuedKey) -> int:
    """The first demo portfolio of `owner`: a year of real snapshots from the analytics code."""
    await seed_demo_portfolios(pool, owner_id=owner.user_id, clock=PINNED_CLOCK)
    portfolio_id: int = await pool.fetchval(
        "SELECT id FROM portfolios WHERE owner_id = $1 ORDER BY id LIMIT 1", owner.user_id
    )
    return portfolio_id


async def _stored_snapshots(pool: asyncpg.Pool, portfolio_id: int) -> list[dict[str, Any]]:
    """The rows as the handler shaped them before Postgres built the JSON: numbers as floats,
    holdings as stored."""
    rows = await pool.fetch(
        "SELECT date, total_value, market_value, cash, cost_basis, unrealized_pnl, realized_pnl, "
        "income, fees, net_invested, net_flow, day_change, holdings, stale_prices "
        "FROM portfolio_snapshots WHERE portfolio_id = $1 ORDER BY date",
        portfolio_id,
    )
    return [
        {
            **{
                k: float(v) for k, v in row.items() if k not in {"date", "holdings", "stale_prices"}
            },
            "date": row["date"].isoformat(),
            "holdings": row["holdings"],
            "stale_prices": row["stale_prices"],
        }
        for row in rows
    ]


class TestSnapshotsApi:
    async def test_with_and_without_holdings_carry_the_stored_values(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser, pool: asyncpg.Pool
    ) -> None:
        """`holdings=true` returns every stored row with its positions, exactly as before;
        the default and `holdings=false` return the same rows without them."""
        owner = await new_user()
        api = Api(http, api_url, owner.api_key)
        portfolio_id = await _demo_portfolio(pool, owner)
        expected = await _stored_snapshots(pool, portfolio_id)
        assert len(expected) >= 245
        assert all(row["holdings"] for row in expected)
        path = f"/api/v1/portfolios/{portfolio_id}/snapshots"
        status, full, headers = await api.request("GET", f"{path}?holdings=true")
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert full == expected
        values = [{k: v for k, v in row.items() if k != "holdings"} for row in expected]
        for suffix in ("", "?holdings=false"):
            status, body, _ = await api.request("GET", path + suffix)
            assert status == 200
            assert body == values
        middle = expected[100]["date"]
        status, one, _ = await api.request(
            "GET", f"{path}?start={middle}&end={middle}&holdings=true"
        )
        assert one == [expected[100]]
        status, none, _ = await api.request("GET", f"{path}?start=1990-01-01&end=1990-02-01")
        assert (status, none) == (200, [])

    async def test_holdings_must_be_a_boolean(self, alice: Api) -> None:
        """A `holdings` value that is not a boolean is a 400 naming the parameter."""
        portfolio_id = await _portfolio(alice)
        status, problem, _ = await alice.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/snapshots?holdings=maybe"
        )
        assert status == 400, problem
        assert "holdings" in [e["field"] for e in problem["errors"]]

    async def test_a_kept_body_is_served_to_its_owner_only(
        self,
        api_url: str,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        bob: Api,
        pool: asyncpg.Pool,
    ) -> None:
        """Snapshots the API has already built for their owner are a 404 for another user,
        and after a row changes the owner's next poll carries the change."""
        owner = await new_user()
        api = Api(http, api_url, owner.api_key)
        portfolio_id = await _demo_portfolio(pool, owner)
        path = f"/api/v1/portfolios/{portfolio_id}/snapshots?start=2026-06-01&end=2026-06-30"
        for _ in range(2):
            status, rows, _ = await api.request("GET", path)
            assert status == 200
        status, problem, _ = await bob.request("GET", path)
        assert (status, problem["status"]) == (404, 404)
        await pool.execute(
            "UPDATE portfolio_snapshots SET total_value = 12345.5 "
            "WHERE portfolio_id = $1 AND date = '2026-06-15'",
            portfolio_id,
        )
        status, changed, _ = await api.request("GET", path)
        assert status == 200
        assert [r["total_value"] for r in changed if r["date"] == "2026-06-15"] == [12345.5]
        assert changed != rows

    async def test_etag_answers_304_until_a_snapshot_in_the_range_changes(
        self,
        api_url: str,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        bob: Api,
        pool: asyncpg.Pool,
    ) -> None:
        """A poll sending the ETag back gets an empty 304 while no snapshot of the portfolio
        is written (another portfolio's writes leave it), and the next answer after a row of
        its range is rewritten or deleted shows it; the tag differs with `holdings`, and it
        opens nothing to another user."""
        owner = await new_user()
        api = Api(http, api_url, owner.api_key)
        portfolio_id = await _demo_portfolio(pool, owner)
        path = f"/api/v1/portfolios/{portfolio_id}/snapshots?start=2026-06-01&end=2026-06-30"
        status, _, headers = await api.request("GET", path)
        etag = headers["ETag"]
        assert status == 200
        assert headers["Cache-Control"] == "private, no-cache"
        status, body, headers = await api.request("GET", path, headers={"If-None-Match": etag})
        assert (status, body, headers["ETag"]) == (304, None, etag)
        status, _, _ = await api.request("GET", path, headers={"If-None-Match": f"W/{etag}"})
        assert status == 304
        _, _, with_holdings = await api.request("GET", f"{path}&holdings=true")
        assert with_holdings["ETag"] != etag
        status, _, _ = await bob.request("GET", path, headers={"If-None-Match": etag})
        assert status == 404
        # Another portfolio's snapshots: the tag stays.
        await pool.execute(
            "UPDATE portfolio_snapshots SET total_value = total_value + 1 "
            "WHERE portfolio_id = (SELECT max(id) FROM portfolios WHERE owner_id = $1) "
            "AND date = '2026-06-15'",
            owner.user_id,
        )
        status, _, _ = await api.request("GET", path, headers={"If-None-Match": etag})
        assert status == 304
        await pool.execute(
            "UPDATE portfolio_snapshots SET total_value = total_value + 1 "
            "WHERE portfolio_id = $1 AND date = '2026-06-15'",
            portfolio_id,
        )
        status, rows, headers = await api.request("GET", path, headers={"If-None-Match": etag})
        assert status == 200
        changed = headers["ETag"]
        assert changed != etag
        assert {r["date"] for r in rows} >= {"2026-06-15"}
        await pool.execute(
            "DELETE FROM portfolio_snapshots WHERE portfolio_id = $1 AND date = '2026-06-16'",
            portfolio_id,
        )
        status, rows, headers = await api.request("GET", path, headers={"If-None-Match": changed})
        assert status == 200
        assert "2026-06-16" not in {r["date"] for r in rows}
        assert headers["ETag"] not in {etag, changed}
