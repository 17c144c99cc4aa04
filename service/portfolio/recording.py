"""Recording transactions: the one path `POST …/transactions` and imports share.

`record_transactions` resolves each transaction's currency and rate, inserts
them in order in one statement, replays the whole ledger (refusing an oversell
or anything else impossible, naming the transaction at fault) and drops the
snapshots they make stale, all on the caller's connection and transaction: a
rejection raised here leaves nothing stored once the caller's transaction rolls
back.

Currency rules: a transaction without `currency` for an asset whose quote
currency is known and foreign is taken to be priced in the asset's currency
(what a broker statement shows); with no known asset currency it is in the
base currency. A foreign transaction without `fx_rate` gets the stored rate of
its trade date (`service.portfolio.fx`), recorded on it; when none is stored
it is refused (422 naming `fx_rate`), because cash is kept in the base
currency and every later figure would rest on an unknown amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import msgspec

from service.portfolio import store
from service.portfolio.fx import FxRates, major, pair_symbol
from service.portfolio.positions import LedgerError, Transaction, replay
from service.portfolio.schemas import DECIMAL_PLACES, TransactionCreate

_RATE_PLACES = Decimal(1).scaleb(-DECIMAL_PLACES["fx_rate"])


class TransactionRejected(ValueError):
    """A transaction that cannot be recorded: `index` in the batch (None: the batch as a
    whole), the `field` at fault (None: the ledger), and an HTTP `status`."""

    def __init__(
        self,
        detail: str,
        *,
        index: int | None,
        field: str | None,
        status: int = 422,
        transaction_id: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.index = index
        self.field = field
        self.status = status
        self.transaction_id = transaction_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    """A transaction's currency and booked rate, as they will be stored."""

    currency: str | None
    fx_rate: Decimal | None


def priced_in(tx: TransactionCreate, *, asset_currency: str | None, base: str) -> str | None:
    """The currency `tx` is in as it will be stored: its own, else the asset's when that is
    known and foreign, else None (the base currency)."""
    if tx.currency is None and asset_currency is not None and major(asset_currency)[0] != base:
        return asset_currency
    return tx.currency


async def with_stored_currencies(
    connection: asyncpg.Connection, *, base_currency: str, transactions: Sequence[TransactionCreate]
) -> list[TransactionCreate]:
    """`transactions` with the currency each will be stored in, so they compare equal to
    stored ones (an import's duplicate check)."""
    currencies = await store.asset_currencies(
        connection, sorted({tx.symbol for tx in transactions if tx.symbol})
    )
    return [
        msgspec.structs.replace(
            tx,
            currency=priced_in(
                tx, asset_currency=currencies.get(tx.symbol or ""), base=base_currency
            ),
        )
        for tx in transactions
    ]


def resolve_currency(
    tx: TransactionCreate,
    *,
    asset_currency: str | None,
    base: str,
    rates: FxRates,
    index: int | None = None,
) -> Resolved:
    """The currency `tx` is priced in and its rate to `base` (pure; raises
    TransactionRejected naming the field)."""
    currency = priced_in(tx, asset_currency=asset_currency, base=base)
    if currency is None:
        if tx.fx_rate is not None:
            raise TransactionRejected(
                f"fx_rate: not used for a transaction in the base currency {base}",
                index=index,
                field="fx_rate",
            )
        return Resolved(currency=None, fx_rate=None)
    own = major(currency)[0]
    if asset_currency is not None and own not in (major(asset_currency)[0], base):
        raise TransactionRejected(
            f"currency: {tx.symbol} is quoted in {asset_currency}; a transaction in it is in "
            f"{asset_currency} or the base currency {base}, not {currency}",
            index=index,
            field="currency",
        )
    if own == base:
        if tx.fx_rate is not None:
            raise TransactionRejected(
                f"fx_rate: not used for a transaction in the base currency {base}",
                index=index,
                field="fx_rate",
            )
        return Resolved(currency=currency, fx_rate=None)
    if tx.fx_rate is not None:
        return Resolved(currency=currency, fx_rate=tx.fx_rate)
    stored = rates.rate(own, base, tx.date)
    if stored is None:
        raise TransactionRejected(
            f"fx_rate: no stored {own}{base} rate on or near {tx.date}; give fx_rate ({base} "
            f"per {own}) or fetch {pair_symbol(own, base)} first",
            index=index,
            field="fx_rate",
        )
    return Resolved(currency=currency, fx_rate=stored.quantize(_RATE_PLACES))


async def record_transactions(
    connection: asyncpg.Connection,
    *,
    portfolio_id: int,
    base_currency: str,
    transactions: Sequence[TransactionCreate],
) -> list[Transaction]:
    """Record `transactions` in order into a portfolio the caller has locked and owns.

    Run it inside a transaction: on TransactionRejected nothing must be kept."""
    if not transactions:
        return []
    symbols = sorted({tx.symbol for tx in transactions if tx.symbol})
    currencies = await store.asset_currencies(connection, symbols)
    wanted = {tx.currency for tx in transactions if tx.currency} | set(currencies.values())
    rates = await store.load_rates(
        connection,
        store.candidate_pairs(wanted, [base_currency]),
        start=min(tx.date for tx in transactions),
        end=max(tx.date for tx in transactions),
    )
    resolved = []
    for index, tx in enumerate(transactions):
        booked = resolve_currency(
            tx,
            asset_currency=currencies.get(tx.symbol) if tx.symbol else None,
            base=base_currency,
            rates=rates,
            index=index,
        )
        resolved.append(
            msgspec.structs.replace(tx, currency=booked.currency, fx_rate=booked.fx_rate)
        )
    recorded = await store.insert_transactions(connection, portfolio_id=portfolio_id, rows=resolved)
    try:
        await check_ledger(connection, portfolio_id=portfolio_id, base_currency=base_currency)
    except TransactionRejected as exc:
        positions = {tx.id: index for index, tx in enumerate(recorded)}
        exc.index = positions.get(exc.transaction_id) if exc.transaction_id is not None else None
        raise
    await store.invalidate_snapshots(
        connection, portfolio_id=portfolio_id, since=min(tx.date for tx in transactions)
    )
    return recorded


async def check_ledger(
    connection: asyncpg.Connection, *, portfolio_id: int, base_currency: str
) -> None:
    """Refuse a history that cannot happen (selling more than held, overdrawing, one
    position traded in two currencies): TransactionRejected with status 422."""
    transactions = await store.list_transactions(connection, portfolio_id)
    symbols = sorted({tx.symbol for tx in transactions if tx.symbol})
    splits = await store.load_splits(connection, symbols)
    try:
        replay(transactions, [s for items in splits.values() for s in items], base=base_currency)
    except LedgerError as exc:
        raise TransactionRejected(
            str(exc), index=None, field=None, transaction_id=exc.transaction_id
        ) from None
