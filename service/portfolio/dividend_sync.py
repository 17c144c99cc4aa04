"""Write a portfolio's generated DIVIDEND transactions so they match its stored dividends.

Run inside the caller's database transaction: by the API when a user toggles
`auto_dividends` or changes a transaction, and by the worker after each history fetch.
It locks the portfolio row, so it serialises with transaction writes; it reads, plans
(`service.portfolio.dividends`) and writes only the difference, so running it twice changes
nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg

from service.portfolio import store
from service.portfolio.dividends import (
    DividendChanges,
    StoredDividend,
    diff_dividends,
    plan_dividends,
)

_UPDATE = (
    "UPDATE transactions SET date = $2, amount = $3, currency = $4, note = $5 "
    "WHERE id = $1 AND generated_ex_date IS NOT NULL"
)
_INSERT = (
    "INSERT INTO transactions (portfolio_id, type, date, symbol, amount, currency, note, "
    "generated_ex_date) SELECT $1, 'DIVIDEND', d.date, d.symbol, d.amount, d.currency, d.note, "
    "d.ex_date FROM unnest($2::date[], $3::text[], $4::numeric[], $5::text[], $6::text[], "
    "$7::date[]) AS d (date, symbol, amount, currency, note, ex_date)"
)


async def sync_dividends(
    connection: asyncpg.Connection, *, portfolio_id: int, today: date
) -> DividendChanges:
    """Make the portfolio's generated dividends what its transactions and the stored
    dividends call for (none when `auto_dividends` is off), dropping the snapshots from the
    earliest date changed; what changed. A portfolio that does not exist changes nothing."""
    auto: bool | None = await connection.fetchval(
        "SELECT auto_dividends FROM portfolios WHERE id = $1 FOR UPDATE", portfolio_id
    )
    if auto is None:
        return DividendChanges()
    transactions = await store.list_transactions(connection, portfolio_id)
    existing = [tx for tx in transactions if tx.generated_ex_date is not None]
    if not auto and not existing:
        return DividendChanges()
    planned = []
    if auto:
        symbols = sorted({tx.symbol for tx in transactions if tx.type == "BUY" and tx.symbol})
        planned = plan_dividends(
            transactions,
            await _stored_dividends(connection, symbols),
            splits=await store.load_splits(connection, symbols),
            currencies=await _currencies(connection, symbols),
            today=today,
        )
    changes = diff_dividends(existing, planned)
    if not changes:
        return changes
    if changes.delete:
        await connection.execute(
            "DELETE FROM transactions WHERE id = ANY($1::bigint[]) AND portfolio_id = $2",
            list(changes.delete),
            portfolio_id,
        )
    for tx_id, wanted in changes.update:
        await connection.execute(
            _UPDATE, tx_id, wanted.date, wanted.amount, wanted.currency, wanted.note
        )
    if changes.insert:
        rows = changes.insert
        await connection.execute(
            _INSERT,
            portfolio_id,
            [r.date for r in rows],
            [r.symbol for r in rows],
            [r.amount for r in rows],
            [r.currency for r in rows],
            [r.note for r in rows],
            [r.ex_date for r in rows],
        )
    assert changes.since is not None
    await store.invalidate_snapshots(connection, portfolio_id=portfolio_id, since=changes.since)
    return changes


async def auto_portfolios_holding(
    connection: asyncpg.Connection, symbols: Sequence[str]
) -> list[int]:
    """Portfolios with `auto_dividends` on that ever bought one of `symbols`, by id."""
    if not symbols:
        return []
    rows = await connection.fetch(
        "SELECT DISTINCT p.id FROM portfolios p JOIN transactions t ON t.portfolio_id = p.id "
        "WHERE p.auto_dividends AND t.type = 'BUY' AND t.symbol = ANY($1::text[]) ORDER BY p.id",
        sorted(set(symbols)),
    )
    return [int(row["id"]) for row in rows]


async def _stored_dividends(
    connection: asyncpg.Connection, symbols: Sequence[str]
) -> list[StoredDividend]:
    if not symbols:
        return []
    rows = await connection.fetch(
        "SELECT symbol, ex_date, amount, pay_date FROM dividends "
        "WHERE symbol = ANY($1::text[]) ORDER BY symbol, ex_date",
        list(symbols),
    )
    return [
        StoredDividend(
            symbol=row["symbol"],
            ex_date=row["ex_date"],
            amount=row["amount"],
            pay_date=row["pay_date"],
        )
        for row in rows
    ]


async def _currencies(connection: asyncpg.Connection, symbols: Sequence[str]) -> dict[str, str]:
    rows = await connection.fetch(
        "SELECT symbol, currency FROM assets WHERE symbol = ANY($1::text[]) "
        "AND currency IS NOT NULL",
        list(symbols),
    )
    return {row["symbol"]: row["currency"] for row in rows}
