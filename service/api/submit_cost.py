"""How many symbols a submit asks the market-data providers for: what the per-key symbol
budget (`SUBMIT_SYMBOL_LIMIT`) charges.

A fetch costs its symbols and an asset-info request one. A price update costs the symbols it
names, or, when it names portfolios (or none: all of the user's), the distinct symbols ever
bought in them: an upper bound of what they hold, read with one indexed query instead of
replaying positions. Analytics tasks read stored prices and cost nothing.
"""

from __future__ import annotations

import asyncpg

from service.core.contracts import (
    FetchAssetInfo,
    FetchMarketData,
    TaskContract,
    UpdatePortfolioPrices,
)


def symbols_named(task: TaskContract) -> int | None:
    """The symbols `task` names itself; None when portfolios' holdings decide."""
    if isinstance(task, FetchMarketData):
        return len(task.symbols)
    if isinstance(task, FetchAssetInfo):
        return 1
    if isinstance(task, UpdatePortfolioPrices):
        return len(task.symbols) if task.symbols is not None else None
    return 0


async def portfolio_symbols(
    connection: asyncpg.Connection, *, owner_id: int | None, portfolio_ids: list[int] | None
) -> int:
    """Distinct symbols ever bought in `owner_id`'s portfolios (`portfolio_ids` of them, or all)."""
    count: int = await connection.fetchval(
        """
        SELECT count(DISTINCT upper(t.symbol))
        FROM transactions t JOIN portfolios p ON p.id = t.portfolio_id
        WHERE t.type = 'BUY'
          AND ($1::bigint IS NULL OR p.owner_id = $1::bigint)
          AND ($2::bigint[] IS NULL OR p.id = ANY($2::bigint[]))
        """,
        owner_id,
        portfolio_ids,
    )
    return count


async def symbols_requested(pool: asyncpg.Pool, task: TaskContract) -> int:
    """The symbols `task` will ask the providers for, as the symbol budget counts them."""
    named = symbols_named(task)
    if named is not None or not isinstance(task, UpdatePortfolioPrices):
        return named or 0
    async with pool.acquire() as connection:
        return await portfolio_symbols(
            connection, owner_id=task.user_id, portfolio_ids=task.portfolio_ids
        )
