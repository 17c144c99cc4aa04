"""Test data helpers: portfolios, transactions and closes written straight to Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal

import asyncpg

from service.core.users import IssuedKey, create_user


async def new_owner(pool: asyncpg.Pool) -> IssuedKey:
    """A fresh user with an API key."""
    async with pool.acquire() as connection:
        return await create_user(connection, email=f"{uuid.uuid4().hex[:12]}@portfolio.test")


async def new_owner_id(pool: asyncpg.Pool) -> int:
    """The id of a fresh user."""
    return (await new_owner(pool)).user_id


async def create_portfolio(
    pool: asyncpg.Pool, *, owner_id: int, name: str, base_currency: str = "USD"
) -> int:
    """Insert a portfolio and return its id."""
    portfolio_id: int = await pool.fetchval(
        "INSERT INTO portfolios (owner_id, name, base_currency) VALUES ($1, $2, $3) RETURNING id",
        owner_id,
        name,
        base_currency,
    )
    return portfolio_id


async def add_transactions(
    pool: asyncpg.Pool, portfolio_id: int, rows: Sequence[Mapping[str, object]]
) -> None:
    """Insert transactions in the order given (which is their recorded order)."""
    for row in rows:
        await pool.execute(
            "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price, amount, "
            "fee) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            portfolio_id,
            row["type"],
            row["date"],
            row.get("symbol"),
            _dec(row.get("quantity")),
            _dec(row.get("price")),
            _dec(row.get("amount")),
            _dec(row.get("fee")) or Decimal(0),
        )


async def put_closes(
    pool: asyncpg.Pool,
    symbol: str,
    closes: Mapping[date, float],
    *,
    currency: str = "USD",
    asset_type: str = "Equity",
    sector: str = "Technology",
) -> None:
    """Upsert an asset (left as it is when unchanged) and its closes (replacing any stored
    for those dates)."""
    await pool.execute(
        "INSERT INTO assets (symbol, currency, asset_type, sector) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (symbol) DO UPDATE SET currency = excluded.currency, "
        "asset_type = excluded.asset_type, sector = excluded.sector "
        "WHERE (assets.currency, assets.asset_type, assets.sector) "
        "IS DISTINCT FROM (excluded.currency, excluded.asset_type, excluded.sector)",
        symbol,
        currency,
        asset_type,
        sector,
    )
    await pool.executemany(
        "INSERT INTO daily_prices (symbol, date, close, adj_close, source) "
        "VALUES ($1, $2, $3, $3, 'test') ON CONFLICT (symbol, date) "
        "DO UPDATE SET close = excluded.close, adj_close = excluded.adj_close",
        [(symbol, day, Decimal(str(close))) for day, close in closes.items()],
    )


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))
