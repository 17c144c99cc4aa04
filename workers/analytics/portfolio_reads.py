"""Bulk reads for analytics: a batch of portfolios' transactions, splits and closes.

Each read is one statement for the whole batch, never one per holding.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg

from service.portfolio.fx import NO_RATES, FxRates
from service.portfolio.positions import Split, Transaction
from service.portfolio.store import (
    TRANSACTION_COLUMNS,
    candidate_pairs,
    load_rates,
    load_splits,
    transaction_from_row,
)
from service.portfolio.valuation import PriceHistory


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioRow:
    """A portfolio's identity."""

    id: int
    owner_id: int
    name: str
    base_currency: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketData:
    """Closes, splits and quote currencies for a set of symbols."""

    prices: dict[str, PriceHistory]
    splits: dict[str, list[Split]]
    currencies: dict[str, str]
    rates: FxRates = NO_RATES


async def select_portfolios(
    connection: asyncpg.Connection,
    *,
    portfolio_ids: Sequence[int] | None,
    user_id: int | None,
) -> list[PortfolioRow]:
    """The portfolios named (restricted to `user_id`'s when given), or all of theirs, or all."""
    rows = await connection.fetch(
        """
        SELECT id, owner_id, name, base_currency FROM portfolios
        WHERE ($1::bigint[] IS NULL OR id = ANY($1)) AND ($2::bigint IS NULL OR owner_id = $2)
        ORDER BY id
        """,
        list(portfolio_ids) if portfolio_ids is not None else None,
        user_id,
    )
    return [PortfolioRow(**dict(row)) for row in rows]


async def load_transactions(
    connection: asyncpg.Connection, portfolio_ids: Sequence[int]
) -> dict[int, list[Transaction]]:
    """Every transaction of the portfolios, by portfolio, in recorded order per date."""
    rows = await connection.fetch(
        f"SELECT portfolio_id, {TRANSACTION_COLUMNS} FROM transactions "  # noqa: S608 - constant text
        "WHERE portfolio_id = ANY($1::bigint[]) ORDER BY portfolio_id, date, id",
        list(portfolio_ids),
    )
    by_portfolio: dict[int, list[Transaction]] = defaultdict(list)
    for row in rows:
        by_portfolio[row["portfolio_id"]].append(transaction_from_row(row))
    return by_portfolio


async def load_market_data(
    connection: asyncpg.Connection,
    symbols: Sequence[str],
    *,
    start: date,
    end: date,
    bases: Sequence[str] = (),
    tx_currencies: Iterable[str] = (),
) -> MarketData:
    """Closes in [start, end] plus each symbol's last close before `start`, splits,
    currencies, and the FX rates converting them (and `tx_currencies`) into `bases`."""
    symbol_list = sorted(set(symbols))
    rows = await connection.fetch(
        """
        SELECT p.symbol, p.date, p.close
        FROM unnest($1::text[]) AS s (symbol)
        CROSS JOIN LATERAL (
            SELECT d.symbol, d.date, d.close FROM daily_prices d
            WHERE d.symbol = s.symbol AND d.date < $2
            ORDER BY d.date DESC LIMIT 1
        ) AS p
        UNION ALL
        SELECT symbol, date, close FROM daily_prices
        WHERE symbol = ANY($1::text[]) AND date BETWEEN $2 AND $3
        ORDER BY 1, 2
        """,
        symbol_list,
        start,
        end,
    )
    dates: dict[str, list[date]] = defaultdict(list)
    closes: dict[str, list[Decimal]] = defaultdict(list)
    for row in rows:
        dates[row["symbol"]].append(row["date"])
        closes[row["symbol"]].append(row["close"])
    prices = {s: PriceHistory(tuple(dates[s]), tuple(closes[s])) for s in dates}
    splits = await load_splits(connection, symbol_list)
    currencies = {
        row["symbol"]: row["currency"]
        for row in await connection.fetch(
            "SELECT symbol, currency FROM assets "
            "WHERE symbol = ANY($1::text[]) AND currency IS NOT NULL",
            symbol_list,
        )
    }
    return MarketData(
        prices=prices,
        splits=splits,
        currencies=currencies,
        rates=await load_rates(
            connection,
            candidate_pairs([*currencies.values(), *tx_currencies], bases),
            start=start,
            end=end,
        ),
    )


def symbols_of(transactions: Sequence[Transaction]) -> set[str]:
    """Every symbol a list of transactions touches."""
    return {tx.symbol for tx in transactions if tx.symbol}
