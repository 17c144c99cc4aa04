"""Hostile symbols and ids on every route that takes one: a 400 or 404 problem, never a
server error, never a success."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from service.core.users import IssuedKey

pytestmark = pytest.mark.timeout(120)

# Sent percent-encoded exactly as written here, so the client normalises nothing away.
HOSTILE_TEXT = {
    "sql-quote": "AAPL'; DROP TABLE assets;--",
    "sql-or": "1 OR 1=1",
    "sql-union": "x' UNION SELECT api_key FROM api_keys--",
    "unicode": "ÄPFEL-日本-𝔘",
    "right-to-left": "\u202eLPAA",
    "nul-byte": "AA\x00PL",
    "ten-kilobytes": "A" * 10_240,
    "traversal": "../../etc/passwd",
    "traversal-encoded": "..%2F..%2Fetc%2Fpasswd",
    "empty-ish": " ",
}
HOSTILE_NUMBERS = {
    "negative": "-1",
    "zero": "0",
    "huge": str(10**30),
    "bigint-plus-one": str(2**63),
    "float": "1.5",
    "exponent": "1e3",
}
SYMBOL_ROUTES = ["/api/v1/assets/{}", "/api/v1/assets/{}/prices"]
TASK_ID_ROUTES = [
    ("GET", "/api/v1/tasks/status/{}"),
    ("DELETE", "/api/v1/tasks/cancel/{}"),
    ("GET", "/api/v1/tasks/{}/events"),
]
INT_ID_ROUTES = [
    ("GET", "/api/v1/portfolios/{}"),
    ("DELETE", "/api/v1/portfolios/{}"),
    ("GET", "/api/v1/portfolios/{}/holdings"),
    ("GET", "/api/v1/portfolios/{}/snapshots"),
    ("GET", "/api/v1/portfolios/{}/performance"),
    ("GET", "/api/v1/portfolios/{}/transactions"),
    ("DELETE", "/api/v1/portfolios/1/transactions/{}"),
    ("GET", "/api/v1/reports/{}"),
]
ALL_VALUES = {**HOSTILE_TEXT, **HOSTILE_NUMBERS}


def _cases(routes: list[tuple[str, str]], values: dict[str, str]) -> list[pytest.ParameterSet]:
    return [
        pytest.param(method, route, value, id=f"{method} {route} {name}")
        for method, route in routes
        for name, value in values.items()
    ]


async def _expect_problem(
    http: aiohttp.ClientSession, base: str, key: str, method: str, path: str
) -> int:
    url = URL(base + path, encoded=True)
    async with http.request(method, url, headers={"Authorization": f"Bearer {key}"}) as response:
        text = await response.text()
        assert response.status in (400, 404), (path[:200], response.status, text[:500])
        assert response.content_type == "application/problem+json", text[:500]
        assert json.loads(text)["status"] == response.status
        return response.status


@pytest.fixture
async def key(new_user: Callable[..., Awaitable[IssuedKey]]) -> str:
    """A plain user's API key."""
    return (await new_user()).api_key


class TestHostilePathValues:
    @pytest.mark.parametrize(
        ("method", "route", "value"), _cases([("GET", r) for r in SYMBOL_ROUTES], ALL_VALUES)
    )
    async def test_symbols(
        self,
        api_url: str,
        http: aiohttp.ClientSession,
        key: str,
        method: str,
        route: str,
        value: str,
    ) -> None:
        """A hostile symbol in the path is a 400 or 404 problem."""
        await _expect_problem(http, api_url, key, method, route.format(quote(value, safe="%")))

    @pytest.mark.parametrize(("method", "route", "value"), _cases(TASK_ID_ROUTES, ALL_VALUES))
    async def test_task_ids(
        self,
        api_url: str,
        http: aiohttp.ClientSession,
        key: str,
        method: str,
        route: str,
        value: str,
    ) -> None:
        """A hostile task id is a 400 problem: it is not a UUID."""
        status = await _expect_problem(
            http, api_url, key, method, route.format(quote(value, safe="%"))
        )
        # "../" segments may resolve to another path, which is then simply not found.
        assert status == 400 or ".." in value

    @pytest.mark.parametrize(("method", "route", "value"), _cases(INT_ID_ROUTES, ALL_VALUES))
    async def test_numeric_ids(
        self,
        api_url: str,
        http: aiohttp.ClientSession,
        key: str,
        method: str,
        route: str,
        value: str,
    ) -> None:
        """A hostile portfolio, transaction or report id is a 400 or 404 problem."""
        await _expect_problem(http, api_url, key, method, route.format(quote(value, safe="%")))


class TestHostileBodies:
    @pytest.mark.parametrize(("name", "value"), list(HOSTILE_TEXT.items()), ids=list(HOSTILE_TEXT))
    async def test_symbols_in_submits(
        self, api_url: str, http: aiohttp.ClientSession, key: str, name: str, value: str
    ) -> None:
        """A hostile symbol in a submit body is a 400 problem naming it; nothing is queued."""
        for path, body in [
            ("market-data", {"symbols": ["AAPL", value]}),
            ("asset-info", {"symbol": value}),
            ("portfolio-prices", {"symbols": [value]}),
        ]:
            async with http.post(
                f"{api_url}/api/v1/tasks/{path}",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                problem = await response.json(content_type=None)
                assert response.status == 400, (name, path, problem)
                assert response.content_type == "application/problem+json"
                assert any("symbol" in error["field"] for error in problem["errors"]), problem

    @pytest.mark.parametrize("value", [-1, 0, 10**30, 2**63, 1.5, "x", None])
    async def test_ids_in_submits(
        self, api_url: str, http: aiohttp.ClientSession, key: str, value: object
    ) -> None:
        """A hostile portfolio id in a submit body is a 400 problem naming it."""
        async with http.post(
            f"{api_url}/api/v1/tasks/portfolio-report",
            json={"portfolio_id": value},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            problem = await response.json(content_type=None)
            assert response.status == 400, problem
            assert [error["field"] for error in problem["errors"]] == ["portfolio_id"]


class TestUnstorableText:
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("POST", "/api/v1/portfolios", {"name": "a\x00b"}),
            ("GET", "/api/v1/tasks?name=a%00b", None),
            ("GET", "/api/v1/tasks?name=" + quote("x'; DROP TABLE tasks;--"), None),
        ],
        ids=["portfolio-name-nul", "task-name-nul", "task-name-sql"],
    )
    async def test_nul_and_sql_in_text_fields(
        self,
        api_url: str,
        http: aiohttp.ClientSession,
        key: str,
        method: str,
        path: str,
        body: object,
    ) -> None:
        """A NUL or SQL fragment in a stored or filtered text field is a 400 problem (the
        schema's pattern refuses it), never a database error."""
        async with http.request(
            method,
            URL(api_url + path, encoded=True),
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            problem = await response.json(content_type=None)
            assert response.status == 400, problem
            assert response.content_type == "application/problem+json"
