"""Transaction import and export through the real API and CLI: all or nothing, idempotent,
round-tripping, limited and scoped to the owner."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.core.users import IssuedKey
from service.portfolio.import_format import CSV_COLUMNS, MAX_ROWS
from tests.api_client import Api

pytestmark = pytest.mark.timeout(120)
NewUser = Callable[..., Awaitable[IssuedKey]]
EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
HEADER = ",".join(CSV_COLUMNS)
CSV = {"Content-Type": "text/csv"}
ROWS = (
    f"{HEADER}\n"
    "2024-01-02,DEPOSIT,,,,1000,0,USD,start\n"
    "2024-01-03,BUY,IMPA,10,20,,1,,\n"
    "2024-01-03,BUY,IMPA,10,20,,1,,\n"
    '2024-01-04,FEE,,,,2.5,0,,"custody, Q1"\n'
)


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


async def _import(
    api: Api, portfolio_id: int, text: str | bytes, content_type: str = "text/csv"
) -> tuple[int, Any]:
    raw = text.encode() if isinstance(text, str) else text
    status, body, _ = await api.request(
        "POST",
        f"/api/v1/portfolios/{portfolio_id}/transactions/import",
        raw=raw,
        headers={"Content-Type": content_type},
    )
    return status, body


async def _export(api: Api, portfolio_id: int) -> str:
    async with api.session.get(
        f"{api.base_url}/api/v1/portfolios/{portfolio_id}/transactions?format=csv",
        headers=api.headers(),
    ) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/csv"
        return await response.text()


async def _count(pool: asyncpg.Pool, portfolio_id: int) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM transactions WHERE portfolio_id = $1", portfolio_id
    )
    return count


class TestImport:
    async def test_imports_once_then_counts_duplicates(
        self, alice: Api, pool: asyncpg.Pool
    ) -> None:
        """A file imports every row (identical rows both); importing it again adds nothing and
        counts them all as duplicates; a longer file adds only its new rows."""
        portfolio_id = await _portfolio(alice)
        assert await _import(alice, portfolio_id, ROWS) == (
            200,
            {"imported": 4, "duplicates": 0},
        )
        assert await _import(alice, portfolio_id, ROWS) == (
            200,
            {"imported": 0, "duplicates": 4},
        )
        longer = ROWS + "2024-01-05,SELL,IMPA,5,21,,1,,\n"
        assert await _import(alice, portfolio_id, longer) == (
            200,
            {"imported": 1, "duplicates": 4},
        )
        assert await _count(pool, portfolio_id) == 5
        status, listed, _ = await alice.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/transactions"
        )
        assert status == 200
        assert [(t["type"], t["note"]) for t in listed][3] == ("FEE", "custody, Q1")

    async def test_a_bad_row_stores_nothing_and_is_named(
        self, alice: Api, pool: asyncpg.Pool
    ) -> None:
        """One bad row refuses the whole file with a 400 naming its line and column."""
        portfolio_id = await _portfolio(alice)
        bad = ROWS + "2024-01-05,BUY,IMPA,1,-3,,0,,\n"
        status, problem = await _import(alice, portfolio_id, bad)
        assert status == 400, problem
        assert problem["detail"] == "line 6, price: must not be negative"
        assert problem["errors"] == [{"field": "line 6.price", "message": "must not be negative"}]
        assert await _count(pool, portfolio_id) == 0

    async def test_an_oversell_stores_nothing_and_is_named(
        self, alice: Api, pool: asyncpg.Pool
    ) -> None:
        """A row that would sell more than held is a 422 naming its line; nothing is stored,
        and the snapshots already stored stay."""
        portfolio_id = await _portfolio(alice)
        await pool.execute(
            "INSERT INTO portfolio_snapshots (portfolio_id, date, total_value, market_value, cash,"
            " cost_basis, unrealized_pnl, realized_pnl, income, fees, net_invested, net_flow, "
            "day_change, holdings) VALUES ($1, '2024-01-02', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "
            "'[]')",
            portfolio_id,
        )
        oversell = ROWS + "2024-01-05,SELL,IMPA,21,20,,0,,\n"
        status, problem = await _import(alice, portfolio_id, oversell)
        assert status == 422, problem
        assert problem["detail"] == "line 6: cannot sell 21 IMPA on 2024-01-05: only 20 held"
        assert [e["field"] for e in problem["errors"]] == ["line 6"]
        assert await _count(pool, portfolio_id) == 0
        snapshots = await pool.fetchval(
            "SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = $1", portfolio_id
        )
        assert snapshots == 1
        assert (await _import(alice, portfolio_id, ROWS))[0] == 200
        snapshots = await pool.fetchval(
            "SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = $1", portfolio_id
        )
        assert snapshots == 0

    async def test_ghostfolio_export(self, alice: Api) -> None:
        """Ghostfolio's activity export imports (after the deposit that funds it), and again
        adds nothing."""
        portfolio_id = await _portfolio(alice)
        await _import(alice, portfolio_id, f"{HEADER}\n2023-01-02,DEPOSIT,,,,5000,0,,\n")
        export = (EXAMPLES / "ghostfolio-export.json").read_bytes()
        status, body = await _import(alice, portfolio_id, export, "application/json")
        assert (status, body) == (200, {"imported": 4, "duplicates": 0})
        assert await _import(alice, portfolio_id, export, "application/json") == (
            200,
            {"imported": 0, "duplicates": 4},
        )
        status, listed, _ = await alice.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/transactions"
        )
        assert [(t["type"], t["date"], t["amount"] or t["price"]) for t in listed[1:]] == [
            ("BUY", "2023-01-03", 298.5),
            ("DIVIDEND", "2023-03-09", 3.4),
            ("FEE", "2023-06-30", 12.0),
            ("SELL", "2023-09-01", 330.1),
        ]
        bad = b'{"activities": [{"type": "INTEREST", "date": "2023-01-03", "quantity": 1}]}'
        status, problem = await _import(alice, portfolio_id, bad, "application/json")
        assert status == 400
        assert problem["errors"][0]["field"] == "activities[0].type"

    async def test_more_than_the_row_limit_is_413(self, alice: Api, pool: asyncpg.Pool) -> None:
        """MAX_ROWS + 1 rows (under the body limit) are a 413 problem; nothing is stored."""
        portfolio_id = await _portfolio(alice)
        text = "date,type,amount\n" + "2024-01-02,DEPOSIT,1\n" * (MAX_ROWS + 1)
        status, problem = await _import(alice, portfolio_id, text)
        assert status == 413, problem
        assert "10,000" in problem["detail"]
        assert await _count(pool, portfolio_id) == 0

    async def test_the_row_limit_imports(self, alice: Api, pool: asyncpg.Pool) -> None:
        """MAX_ROWS rows import in one request."""
        portfolio_id = await _portfolio(alice)
        text = "date,type,amount\n" + "2024-01-02,DEPOSIT,1\n" * MAX_ROWS
        assert await _import(alice, portfolio_id, text) == (
            200,
            {"imported": MAX_ROWS, "duplicates": 0},
        )
        assert await _count(pool, portfolio_id) == MAX_ROWS

    async def test_someone_elses_portfolio_is_404(
        self, alice: Api, bob: Api, pool: asyncpg.Pool
    ) -> None:
        """Importing into or exporting another user's portfolio answers 404 and stores
        nothing."""
        portfolio_id = await _portfolio(alice)
        status, problem = await _import(bob, portfolio_id, ROWS)
        assert status == 404, problem
        assert problem["detail"] == f"no portfolio {portfolio_id}"
        status, _, _ = await bob.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/transactions?format=csv"
        )
        assert status == 404
        assert await _count(pool, portfolio_id) == 0


class TestExport:
    async def test_export_import_round_trips(self, alice: Api) -> None:
        """Export, import into a fresh portfolio, export again: the same bytes; re-importing
        the export into the original adds nothing."""
        original = await _portfolio(alice, "original")
        await _import(alice, original, (EXAMPLES / "transactions.csv").read_text())
        status, _, _ = await alice.request(
            "POST",
            f"/api/v1/portfolios/{original}/transactions",
            body={"type": "DEPOSIT", "date": "2025-01-02", "amount": 0.5, "note": 'a "q"\nb'},
        )
        assert status == 201
        first = await _export(alice, original)
        assert first.startswith(f"{HEADER}\n2025-01-02,DEPOSIT,,,,20000,0,USD,opening transfer,\n")
        assert "\n2025-03-03,BUY,SAP.DE,5,262.4,,1.5,EUR,broker's rate,1.0492\n" in first
        copy = await _portfolio(alice, "copy")
        assert await _import(alice, copy, first) == (200, {"imported": 11, "duplicates": 0})
        assert await _export(alice, copy) == first
        assert await _import(alice, original, first) == (200, {"imported": 0, "duplicates": 11})

    async def test_json_stays_the_default(self, alice: Api) -> None:
        """Without `format`, transactions are JSON as before; an unknown format is a 400."""
        portfolio_id = await _portfolio(alice)
        await _import(alice, portfolio_id, ROWS)
        status, listed, headers = await alice.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/transactions"
        )
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert len(listed) == 4
        status, problem, _ = await alice.request(
            "GET", f"/api/v1/portfolios/{portfolio_id}/transactions?format=xml"
        )
        assert status == 400
        assert "format" in [e["field"] for e in problem["errors"]]


HOSTILE_BODIES = [
    pytest.param(b"date,type,amount\n2024-01-02,DEPOSIT,5\n", "text/plain", 415, id="text-plain"),
    pytest.param(b"x", "application/xml", 415, id="xml"),
    pytest.param(b"date,type,amount\n2024-01-02,DEPOSIT,5\n", "", 415, id="no-content-type"),
    pytest.param(b"date,type,amount\n2024-01-02,DEPOSIT,5\x00\n", "text/csv", 400, id="nul"),
    pytest.param(
        b"date,type,amount,note\n2024-01-02,DEPOSIT,5," + b"n" * 5000 + b"\n",
        "text/csv",
        400,
        id="huge-note",
    ),
    pytest.param(
        b"date,type,symbol\n2024-01-02,BUY," + b"A" * 100_000 + b"\n",
        "text/csv",
        400,
        id="huge-symbol",
    ),
    pytest.param(b"date,type,amount\n2024-01-02,DEPOSIT,\xff\n", "text/csv", 400, id="not-utf8"),
    pytest.param(b'date,type,amount\n"2024-01-02,DEPOSIT,5\n', "text/csv", 400, id="open-quote"),
    pytest.param(b"", "text/csv", 400, id="empty"),
    pytest.param(b"[]", "application/json", 400, id="json-not-an-export"),
    pytest.param(b"x" * (1_048_576 + 1), "text/csv", 413, id="over-body-limit"),
]


class TestHostileImports:
    @pytest.mark.parametrize(("body", "content_type", "expected"), HOSTILE_BODIES)
    async def test_hostile_bodies_are_problems(
        self, alice: Api, pool: asyncpg.Pool, body: bytes, content_type: str, expected: int
    ) -> None:
        """A hostile body is a 4xx problem, never a server error, and stores nothing."""
        portfolio_id = await _portfolio(alice)
        async with alice.session.post(
            f"{alice.base_url}/api/v1/portfolios/{portfolio_id}/transactions/import",
            data=io.BytesIO(body),
            headers=alice.headers({"Content-Type": content_type} if content_type else None),
        ) as response:
            text = await response.text()
            assert response.status == expected, text[:500]
            assert response.content_type == "application/problem+json"
        assert await _count(pool, portfolio_id) == 0

    async def test_a_bom_is_accepted(self, alice: Api) -> None:
        """A CSV saved with a UTF-8 byte order mark (as Excel does) imports."""
        portfolio_id = await _portfolio(alice)
        body = "\ufeffdate,type,amount\n2024-01-02,DEPOSIT,5\n".encode()
        assert await _import(alice, portfolio_id, body, "text/csv; charset=utf-8") == (
            200,
            {"imported": 1, "duplicates": 0},
        )


def findash(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestCli:
    async def test_cli_import_and_export(
        self,
        base_env: dict[str, str],
        api_url: str,
        alice: Api,
        tmp_path: Path,
    ) -> None:
        """`findash portfolios import ID FILE` prints the counts for a CSV or a Ghostfolio
        `.json`, `export ID` writes the CSV to stdout; a bad file exits 2 naming the line."""
        assert alice.api_key is not None
        env = {**base_env, "FINDASH_API_URL": api_url, "FINDASH_API_KEY": alice.api_key}
        portfolio_id = await _portfolio(alice)
        path = tmp_path / "rows.csv"
        path.write_text(ROWS)
        done = findash("--json", "portfolios", "import", str(portfolio_id), str(path), env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"imported": 4, "duplicates": 0}
        exported = findash("portfolios", "export", str(portfolio_id), env=env)
        assert exported.returncode == 0, exported.stderr
        assert exported.stdout == await _export(alice, portfolio_id)
        ghostfolio = EXAMPLES / "ghostfolio-export.json"
        done = findash(
            "--json", "portfolios", "import", str(portfolio_id), str(ghostfolio), env=env
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"imported": 4, "duplicates": 0}
        path.write_text(ROWS + "2024-01-05,GIFT,,,,1,,,\n")
        done = findash("portfolios", "import", str(portfolio_id), str(path), env=env)
        assert done.returncode == 2
        assert "line 6.type" in done.stderr
