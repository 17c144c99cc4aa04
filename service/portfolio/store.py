"""Postgres access for portfolios and transactions, always scoped to the owner."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import asyncpg

from service.portfolio.positions import Split, Transaction
from service.portfolio.pricing import StoredQuote

_GET_PORTFOLIO = (
    "SELECT id, name, base_currency, created_at FROM portfolios WHERE id = $1 AND owner_id = $2"
)


async def create_portfolio(
    connection: asyncpg.Connection, *, owner_id: int, name: str, base_currency: str
) -> asyncpg.Record | None:
    """Insert a portfolio; None when the owner already has one by that name."""
    row: asyncpg.Record | None = await connection.fetchrow(
        "INSERT INTO portfolios (owner_id, name, base_currency) VALUES ($1, $2, $3) "
        "ON CONFLICT (owner_id, name) DO NOTHING "
        "RETURNING id, name, base_currency, created_at",
        owner_id,
        name,
        base_currency,
    )
    return row


async def list_portfolios(connection: asyncpg.Connection, *, owner_id: int) -> list[asyncpg.Record]:
    """The owner's portfolios, oldest first."""
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT id, name, base_currency, created_at FROM portfolios WHERE owner_id = $1 "
        "ORDER BY id",
        owner_id,
    )
    return rows


async def get_portfolio(
    connection: asyncpg.Connection, *, portfolio_id: int, owner_id: int, lock: bool = False
) -> asyncpg.Record | None:
    """The owner's portfolio (row-locked when `lock`, serialising its transaction writes)."""
    query = _GET_PORTFOLIO + (" FOR UPDATE" if lock else "")
    row: asyncpg.Record | None = await connection.fetchrow(
        query,
        portfolio_id,
        owner_id,
    )
    return row


async def delete_portfolio(
    connection: asyncpg.Connection, *, portfolio_id: int, owner_id: int
) -> bool:
    """Delete the owner's portfolio with everything under it; False if there was none."""
    status: str = await connection.execute(
        "DELETE FROM portfolios WHERE id = $1 AND owner_id = $2", portfolio_id, owner_id
    )
    return status == "DELETE 1"


def transaction_from_row(row: asyncpg.Record) -> Transaction:
    """A `transactions` row as the pure core's Transaction."""
    return Transaction(
        id=row["id"],
        type=row["type"],
        date=row["date"],
        symbol=row["symbol"],
        quantity=row["quantity"],
        price=row["price"],
        amount=row["amount"],
        fee=row["fee"],
    )


async def list_transactions(connection: asyncpg.Connection, portfolio_id: int) -> list[Transaction]:
    """The portfolio's transactions in the order they apply."""
    rows = await connection.fetch(
        "SELECT id, type, date, symbol, quantity, price, amount, fee "
        "FROM transactions WHERE portfolio_id = $1 ORDER BY date, id",
        portfolio_id,
    )
    return [transaction_from_row(row) for row in rows]


async def insert_transaction(
    connection: asyncpg.Connection,
    *,
    portfolio_id: int,
    tx_type: str,
    day: date,
    symbol: str | None,
    quantity: Decimal | None,
    price: Decimal | None,
    amount: Decimal | None,
    fee: Decimal,
) -> Transaction:
    """Record a transaction (its id puts it after every earlier-recorded one)."""
    row = await connection.fetchrow(
        "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price, amount, fee) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "RETURNING id, type, date, symbol, quantity, price, amount, fee",
        portfolio_id,
        tx_type,
        day,
        symbol,
        quantity,
        price,
        amount,
        fee,
    )
    assert row is not None
    return transaction_from_row(row)


async def delete_transaction(
    connection: asyncpg.Connection, *, portfolio_id: int, transaction_id: int
) -> date | None:
    """Delete one transaction; its date, or None if the portfolio has no such transaction."""
    found: date | None = await connection.fetchval(
        "DELETE FROM transactions WHERE id = $1 AND portfolio_id = $2 RETURNING date",
        transaction_id,
        portfolio_id,
    )
    return found


async def invalidate_snapshots(
    connection: asyncpg.Connection, *, portfolio_id: int, since: date
) -> None:
    """Drop snapshots a changed transaction makes stale; the next snapshot task rebuilds them."""
    await connection.execute(
        "DELETE FROM portfolio_snapshots WHERE portfolio_id = $1 AND date >= $2",
        portfolio_id,
        since,
    )


async def load_splits(
    connection: asyncpg.Connection, symbols: Sequence[str]
) -> dict[str, list[Split]]:
    """Stored splits of `symbols` (the market-data work's table), dates ascending."""
    splits: dict[str, list[Split]] = defaultdict(list)
    if not symbols:
        return {}
    for row in await connection.fetch(
        "SELECT symbol, date, numerator, denominator FROM splits "
        "WHERE symbol = ANY($1::text[]) ORDER BY symbol, date",
        sorted(set(symbols)),
    ):
        splits[row["symbol"]].append(
            Split(
                symbol=row["symbol"],
                date=row["date"],
                numerator=int(row["numerator"]),
                denominator=int(row["denominator"]),
            )
        )
    return dict(splits)


async def asset_currency(connection: asyncpg.Connection, symbol: str) -> str | None:
    """The quote currency stored for `symbol`, if known."""
    currency: str | None = await connection.fetchval(
        "SELECT currency FROM assets WHERE symbol = $1", symbol
    )
    return currency


async def latest_closes(
    connection: asyncpg.Connection, symbols: Sequence[str], *, on_or_before: date
) -> dict[str, tuple[date, Decimal]]:
    """Each symbol's last close on or before a date, in one statement."""
    rows = await connection.fetch(
        """
        SELECT p.symbol, p.date, p.close FROM unnest($1::text[]) AS s (symbol)
        CROSS JOIN LATERAL (
            SELECT d.symbol, d.date, d.close FROM daily_prices d
            WHERE d.symbol = s.symbol AND d.date <= $2 ORDER BY d.date DESC LIMIT 1
        ) AS p
        """,
        sorted(set(symbols)),
        on_or_before,
    )
    return {row["symbol"]: (row["date"], row["close"]) for row in rows}


async def latest_quotes(
    connection: asyncpg.Connection, symbols: Sequence[str]
) -> dict[str, StoredQuote]:
    """Each symbol's stored latest quote, in one statement."""
    rows = await connection.fetch(
        "SELECT symbol, price, market_time FROM latest_quotes WHERE symbol = ANY($1::text[])",
        sorted(set(symbols)),
    )
    return {
        row["symbol"]: StoredQuote(price=row["price"], market_time=row["market_time"])
        for row in rows
    }
