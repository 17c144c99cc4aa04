"""The `just dev` demo portfolios: created once, with a year of valid history and snapshots."""

from __future__ import annotations

import asyncpg

from service.portfolio.positions import replay
from service.portfolio.store import list_transactions
from tests.conftest import PINNED_CLOCK
from tests.portfolio_data import new_owner_id
from workers.demo_seed import DEMO_PORTFOLIOS, seed_demo_portfolios


class TestDemoSeed:
    async def test_seed_is_idempotent_and_complete(self, pool: asyncpg.Pool) -> None:
        """Seeding twice leaves two portfolios, one of them imported from a CSV file, whose
        year of transactions replays cleanly and whose every trading day has a snapshot."""
        owner = await new_owner_id(pool)
        await seed_demo_portfolios(pool, owner_id=owner, clock=PINNED_CLOCK)
        counts = await pool.fetch(
            "SELECT p.id, count(t.id) AS n FROM portfolios p JOIN transactions t "
            "ON t.portfolio_id = p.id WHERE p.owner_id = $1 GROUP BY p.id ORDER BY p.id",
            owner,
        )
        await seed_demo_portfolios(pool, owner_id=owner, clock=PINNED_CLOCK)
        again = await pool.fetch(
            "SELECT p.id, count(t.id) AS n FROM portfolios p JOIN transactions t "
            "ON t.portfolio_id = p.id WHERE p.owner_id = $1 GROUP BY p.id ORDER BY p.id",
            owner,
        )
        assert len(counts) == len(DEMO_PORTFOLIOS)
        assert again == counts
        for row in counts:
            async with pool.acquire() as connection:
                transactions = await list_transactions(connection, row["id"])
            states = replay(transactions, base="USD")
            assert {tx.type for tx in transactions} == {
                "BUY",
                "SELL",
                "DIVIDEND",
                "DEPOSIT",
                "WITHDRAWAL",
                "FEE",
            }
            assert all(state.cash >= 0 for state in states)
            snapshots = await pool.fetchval(
                "SELECT count(*) FROM portfolio_snapshots WHERE portfolio_id = $1", row["id"]
            )
            assert snapshots >= 245
        euro = await pool.fetchval(
            "SELECT count(*) FROM transactions t JOIN portfolios p ON p.id = t.portfolio_id "
            "WHERE p.owner_id = $1 AND t.currency = 'EUR' AND t.fx_rate > 0",
            owner,
        )
        assert euro > 0  # the EUR-quoted holding, booked at each day's EURUSD close
        imported = await pool.fetch(
            "SELECT p.name, count(*) FILTER (WHERE t.note = 'demo import') AS from_file, "
            "count(*) AS total FROM transactions t JOIN portfolios p ON p.id = t.portfolio_id "
            "WHERE p.owner_id = $1 GROUP BY p.name ORDER BY p.name",
            owner,
        )
        # "Income" came in as a CSV file through the import path; "Core growth" did not.
        assert [(r["name"], r["from_file"] == r["total"] > 0) for r in imported] == [
            ("Core growth", False),
            ("Income", True),
        ]
