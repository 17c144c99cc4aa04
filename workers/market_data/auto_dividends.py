"""After a history fetch, the generated dividends of `auto_dividends` portfolios follow the
dividends it stored: new ones appear, corrected amounts update, removed ones go, and a
dividend whose pay date has come is generated (docs/API.md, Dividends)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date

import asyncpg

from service.core.logs import get_logger
from service.portfolio.dividend_sync import auto_portfolios_holding, sync_dividends
from workers.db_retry import in_transaction

log = get_logger(__name__)


async def follow_dividends(
    pool: asyncpg.Pool, *, symbols: Sequence[str], today: date, retry_seconds: float
) -> int:
    """Bring every `auto_dividends` portfolio that bought one of `symbols` up to date, each
    in its own transaction; how many portfolios changed."""
    if not symbols:
        return 0
    async with pool.acquire() as connection:
        portfolio_ids = await auto_portfolios_holding(connection, symbols)
    changed = 0
    for portfolio_id in portfolio_ids:
        changes = await in_transaction(
            pool,
            functools.partial(sync_dividends, portfolio_id=portfolio_id, today=today),
            retry_seconds=retry_seconds,
            what="generated dividends",
        )
        if changes:
            changed += 1
            log.info(
                "generated dividends changed",
                portfolio_id=portfolio_id,
                inserted=len(changes.insert),
                updated=len(changes.update),
                deleted=len(changes.delete),
                since=changes.since.isoformat() if changes.since else None,
            )
    return changed
