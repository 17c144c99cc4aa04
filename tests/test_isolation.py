"""Isolation (issue 11): one user's key reaches nothing of another user's, on every route
the API documents. Each route is a row of one table; a route missing from the table fails
the completeness test, so a new route cannot skip the question."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.core import task_registry
from service.core.users import IssuedKey
from tests.api_client import Api
from tests.portfolio_data import add_transactions, create_portfolio

NewUser = Callable[..., Awaitable[IssuedKey]]


@dataclass(frozen=True)
class World:
    """What Alice owns, and the ids Bob tries to reach it by."""

    alice: IssuedKey
    task_id: str
    portfolio_id: int
    transaction_id: int
    report_id: int
    symbol: str

    def fill(self, template: str) -> str:
        """`template` with Alice's ids in place of its path parameters."""
        return template.format(
            task_id=self.task_id,
            portfolio_id=self.portfolio_id,
            transaction_id=self.transaction_id,
            report_id=self.report_id,
            symbol=self.symbol,
            user_id=self.alice.user_id,
        )


# (method, documented path, Bob's request path, body, what Bob must get):
#   404     a problem, exactly as for an id that does not exist
#   403     the route refuses to name another user for a plain key
#   absent  a list of Bob's own things, none of Alice's ids in it
#   own     Bob's request acts on Bob's things only (Alice's listing does not show them)
#   shared  market data, the same for every key (no owner)
ROUTES: list[tuple[str, str, str, Any, str]] = [
    ("GET", "/api/v1/tasks/status/{task_id}", "/api/v1/tasks/status/{task_id}", None, "404"),
    ("DELETE", "/api/v1/tasks/cancel/{task_id}", "/api/v1/tasks/cancel/{task_id}", None, "404"),
    ("GET", "/api/v1/tasks/{task_id}/events", "/api/v1/tasks/{task_id}/events", None, "404"),
    ("GET", "/api/v1/tasks/active", "/api/v1/tasks/active", None, "absent"),
    ("GET", "/api/v1/tasks", "/api/v1/tasks", None, "absent"),
    ("GET", "/api/v1/tasks", "/api/v1/tasks?user_id={user_id}", None, "403"),
    ("GET", "/api/v1/tasks/workers", "/api/v1/tasks/workers", None, "403"),
    (
        "POST",
        "/api/v1/tasks/market-data",
        "/api/v1/tasks/market-data",
        {"symbols": ["ISO1"]},
        "own",
    ),
    ("POST", "/api/v1/tasks/asset-info", "/api/v1/tasks/asset-info", {"symbol": "ISO2"}, "own"),
    (
        "POST",
        "/api/v1/tasks/portfolio-prices",
        "/api/v1/tasks/portfolio-prices",
        {"user_id": "{user_id}"},
        "403",
    ),
    (
        "POST",
        "/api/v1/tasks/portfolio-performance",
        "/api/v1/tasks/portfolio-performance",
        {"user_id": "{user_id}"},
        "403",
    ),
    (
        "POST",
        "/api/v1/tasks/portfolio-snapshot",
        "/api/v1/tasks/portfolio-snapshot",
        {"user_id": "{user_id}"},
        "403",
    ),
    (
        "POST",
        "/api/v1/tasks/portfolio-report",
        "/api/v1/tasks/portfolio-report",
        {"portfolio_id": "{portfolio_id}", "user_id": "{user_id}"},
        "403",
    ),
    ("GET", "/api/v1/portfolios", "/api/v1/portfolios", None, "absent"),
    ("POST", "/api/v1/portfolios", "/api/v1/portfolios", {"name": "bob's"}, "own"),
    ("GET", "/api/v1/portfolios/{portfolio_id}", "/api/v1/portfolios/{portfolio_id}", None, "404"),
    (
        "DELETE",
        "/api/v1/portfolios/{portfolio_id}",
        "/api/v1/portfolios/{portfolio_id}",
        None,
        "404",
    ),
    (
        "GET",
        "/api/v1/portfolios/{portfolio_id}/transactions",
        "/api/v1/portfolios/{portfolio_id}/transactions",
        None,
        "404",
    ),
    (
        "POST",
        "/api/v1/portfolios/{portfolio_id}/transactions",
        "/api/v1/portfolios/{portfolio_id}/transactions",
        {"type": "DEPOSIT", "date": "2026-11-02", "amount": 5},
        "404",
    ),
    (
        "PATCH",
        "/api/v1/portfolios/{portfolio_id}",
        "/api/v1/portfolios/{portfolio_id}",
        {"auto_dividends": True},
        "404",
    ),
    (
        "POST",
        "/api/v1/portfolios/{portfolio_id}/transactions/import",
        "/api/v1/portfolios/{portfolio_id}/transactions/import",
        {"activities": [{"type": "FEE", "date": "2026-11-02", "fee": 1}]},
        "404",
    ),
    (
        "DELETE",
        "/api/v1/portfolios/{portfolio_id}/transactions/{transaction_id}",
        "/api/v1/portfolios/{portfolio_id}/transactions/{transaction_id}",
        None,
        "404",
    ),
    (
        "GET",
        "/api/v1/portfolios/{portfolio_id}/holdings",
        "/api/v1/portfolios/{portfolio_id}/holdings",
        None,
        "404",
    ),
    (
        "GET",
        "/api/v1/portfolios/{portfolio_id}/snapshots",
        "/api/v1/portfolios/{portfolio_id}/snapshots",
        None,
        "404",
    ),
    (
        "GET",
        "/api/v1/portfolios/{portfolio_id}/performance",
        "/api/v1/portfolios/{portfolio_id}/performance",
        None,
        "404",
    ),
    ("GET", "/api/v1/reports/{report_id}", "/api/v1/reports/{report_id}", None, "404"),
    ("GET", "/api/v1/assets/{symbol}", "/api/v1/assets/{symbol}", None, "shared"),
    ("GET", "/api/v1/assets/{symbol}/prices", "/api/v1/assets/{symbol}/prices", None, "shared"),
]


async def alices_world(pool: asyncpg.Pool, new_user: NewUser) -> World:
    """Alice with a pending task, a portfolio with a transaction, and a stored report."""
    alice = await new_user()
    symbol = f"I{uuid.uuid4().hex[:5].upper()}"
    portfolio_id = await create_portfolio(pool, owner_id=alice.user_id, name="alice's")
    day = date(2026, 11, 2)
    await add_transactions(
        pool,
        portfolio_id,
        [
            {"type": "DEPOSIT", "date": day, "amount": 1_000},
            {"type": "BUY", "date": day, "symbol": symbol, "quantity": 1, "price": 10},
        ],
    )
    transaction_id = await pool.fetchval(
        "SELECT max(id) FROM transactions WHERE portfolio_id = $1", portfolio_id
    )
    async with pool.acquire() as connection:
        task_id, _ = await task_registry.record_submission(
            connection,
            task_id=str(uuid.uuid4()),
            owner_id=alice.user_id,
            name="fetch_market_data",
            params={"symbols": [symbol]},
            request_id=None,
        )
    report_id = await pool.fetchval(
        "INSERT INTO portfolio_reports (portfolio_id, task_id, format, start_date, end_date, body) "
        "VALUES ($1, $2, 'json', $3, $3, '{}') RETURNING id",
        portfolio_id,
        str(uuid.uuid4()),
        day,
    )
    return World(alice, task_id, portfolio_id, transaction_id, report_id, symbol)


def _fill_body(body: Any, world: World) -> Any:
    if body is None:
        return None
    return {
        key: int(world.fill(value)) if isinstance(value, str) and "{" in value else value
        for key, value in body.items()
    }


async def _ids_listed(api: Api, path: str) -> set[Any]:
    status, listed, _ = await api.request("GET", path)
    assert status == 200
    items = listed["tasks"] if isinstance(listed, dict) else listed
    return {item.get("task_id", item.get("id")) for item in items}


@pytest.mark.usefixtures("worker")
class TestIsolation:
    async def test_the_table_covers_every_documented_route(
        self, api_url: str, http: aiohttp.ClientSession
    ) -> None:
        """Every operation the OpenAPI document lists under /api/v1 has a row in ROUTES."""
        async with http.get(f"{api_url}/schema/openapi.json") as response:
            schema = await response.json()
        documented = {
            (method.upper(), path)
            for path, item in schema["paths"].items()
            if path.startswith("/api/v1/")
            for method in item
            if method in {"get", "post", "put", "patch", "delete"}
        }
        assert {(method, path) for method, path, *_ in ROUTES} == documented

    @pytest.mark.parametrize(
        ("method", "documented", "path", "body", "expect"),
        ROUTES,
        ids=[f"{m} {p} {e}" for m, _, p, _, e in ROUTES],
    )
    async def test_bob_reaches_nothing_of_alices(
        self,
        api_url: str,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        pool: asyncpg.Pool,
        method: str,
        documented: str,
        path: str,
        body: Any,
        expect: str,
    ) -> None:
        """Bob's key gets 404 for Alice's task, portfolio, transaction and report ids, 403
        when naming her as the user, lists without her ids, and leaves all of it unchanged."""
        world = await alices_world(pool, new_user)
        alice = Api(http, api_url, world.alice.api_key)
        bob = Api(http, api_url, (await new_user()).api_key)
        status, answer, _ = await bob.request(
            method, world.fill(path), body=_fill_body(body, world)
        )
        if expect in {"404", "403"}:
            assert status == int(expect), answer
            assert answer["status"] == status
        elif expect == "absent":
            assert status == 200
            listed = answer["tasks"] if isinstance(answer, dict) else answer
            ids = {str(item.get("task_id", item.get("id"))) for item in listed}
            assert not ids & {world.task_id, str(world.portfolio_id)}
        elif expect == "own":
            assert status in {201, 202}, answer
            created = answer.get("task_id", answer.get("id"))
            assert created not in await _ids_listed(alice, "/api/v1/tasks")
            assert created not in await _ids_listed(alice, "/api/v1/portfolios")
        else:
            theirs = await alice.request(method, world.fill(path))
            assert (status, answer) == theirs[:2]

        # Whatever Bob did, Alice's things are as she left them.
        assert (await alice.request("GET", f"/api/v1/portfolios/{world.portfolio_id}"))[0] == 200
        _, transactions, _ = await alice.request(
            "GET", f"/api/v1/portfolios/{world.portfolio_id}/transactions"
        )
        assert len(transactions) == 2
        assert (await alice.request("GET", f"/api/v1/reports/{world.report_id}"))[0] == 200
        state = await pool.fetchval("SELECT state FROM tasks WHERE id = $1", world.task_id)
        assert state == "PENDING"
        assert await pool.fetchval(
            "SELECT cancel_requested_at IS NULL FROM tasks WHERE id = $1", world.task_id
        )
