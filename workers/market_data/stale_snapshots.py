"""Snapshots valued with a stale price are rewritten once the missing close arrives.

A snapshot whose close for some holding could not be fetched was valued at an older
close and records it (`portfolio_snapshots.stale_prices`). When closes of those symbols
are stored later, this asks for those portfolios' snapshots over the affected dates
again; the snapshot upsert rewrites only rows whose values change.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date

import asyncpg

from service.core.contracts import CreatePortfolioSnapshot
from service.core.publisher import TaskPublisher


async def resnapshot_stale(
    pool: asyncpg.Pool, publisher: TaskPublisher, *, symbols: Sequence[str]
) -> list[dict[str, object]]:
    """Publish snapshot tasks for every portfolio with a stale price of `symbols`, one per
    distinct date range; what was published, as result lines."""
    if not symbols:
        return []
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            """
            SELECT s.portfolio_id, min(s.date) AS first, max(s.date) AS last
            FROM portfolio_snapshots s
            CROSS JOIN LATERAL jsonb_each_text(s.stale_prices) AS stale (symbol, price_date)
            WHERE s.stale_prices <> '{}' AND s.stale_prices ?| $1::text[]
              AND stale.symbol = ANY($1::text[])
              -- only where a newer close is stored now: a symbol that never trades again
              -- does not re-queue its snapshots on every fetch
              AND EXISTS (
                  SELECT 1 FROM daily_prices d
                  WHERE d.symbol = stale.symbol
                    AND d.date > stale.price_date::date AND d.date <= s.date
              )
            GROUP BY s.portfolio_id ORDER BY s.portfolio_id
            """,
            list(symbols),
        )
    ranges: dict[tuple[date, date], list[int]] = defaultdict(list)
    for row in rows:
        ranges[(row["first"], row["last"])].append(row["portfolio_id"])
    published: list[dict[str, object]] = []
    for (first, last), portfolio_ids in sorted(ranges.items()):
        task = (
            CreatePortfolioSnapshot(portfolio_ids=portfolio_ids, date=first)
            if first == last
            else CreatePortfolioSnapshot(portfolio_ids=portfolio_ids, start=first, end=last)
        )
        task_id = str(uuid.uuid4())
        await publisher.publish(task, task_id=task_id)
        published.append(
            {
                "task_id": task_id,
                "portfolios": len(portfolio_ids),
                "start": first.isoformat(),
                "end": last.isoformat(),
            }
        )
    return published
