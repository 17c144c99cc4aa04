"""Recording transactions: the one path every new transaction takes (POST and import).

Inside the caller's database transaction, with the portfolio row locked: refuse assets
quoted in another currency, insert, replay the whole history so nothing oversells or
overdraws, and drop the snapshots from the earliest new date on.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from service.portfolio import store
from service.portfolio.positions import LedgerError, Transaction, replay
from service.portfolio.schemas import TransactionCreate


class RecordRefused(ValueError):
    """The transactions cannot be recorded; `index` is the item at fault, when one is."""

    def __init__(self, detail: str, *, index: int | None) -> None:
        super().__init__(detail)
        self.index = index


async def record_transactions(
    connection: asyncpg.Connection,
    *,
    portfolio_id: int,
    base_currency: str,
    items: Sequence[TransactionCreate],
) -> list[Transaction]:
    """Record `items` in order, after everything the portfolio holds; the recorded
    transactions, or RecordRefused (the caller's database transaction must roll back)."""
    if not items:
        return []
    currencies = await store.asset_currencies(
        connection, [item.symbol for item in items if item.symbol]
    )
    for index, item in enumerate(items):
        currency = currencies.get(item.symbol) if item.symbol else None
        if currency is not None and currency != base_currency:
            raise RecordRefused(
                f"{item.symbol} is quoted in {currency} but the portfolio's base currency is "
                f"{base_currency}; only base-currency assets are supported",
                index=index,
            )
    recorded = await store.insert_transactions(connection, portfolio_id=portfolio_id, rows=items)
    history = await store.list_transactions(connection, portfolio_id)
    splits = await store.load_splits(connection, sorted({tx.symbol for tx in history if tx.symbol}))
    try:
        replay(history, [split for found in splits.values() for split in found])
    except LedgerError as exc:
        positions = {tx.id: index for index, tx in enumerate(recorded)}
        at_fault = positions.get(exc.transaction_id) if exc.transaction_id is not None else None
        raise RecordRefused(str(exc), index=at_fault) from None
    await store.invalidate_snapshots(
        connection, portfolio_id=portfolio_id, since=min(item.date for item in items)
    )
    return recorded
