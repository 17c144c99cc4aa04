"""Daily portfolio snapshots: build rows (pure) and upsert them in bulk (one statement per batch).

A portfolio's rows are computed in full before anything is written, and a
portfolio that fails (a missing close, a missing FX rate, an impossible
transaction) contributes no rows: all or nothing per portfolio. Values are in
the portfolio's base currency; each holding also carries its close in its own
currency and the rate used. A missing rate is logged once per pair and date
per run, however many portfolios or rows it affects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from service.core.logs import get_logger
from service.core.trading_calendar import NYSE, TradingCalendar
from service.portfolio.fx import MissingFx
from service.portfolio.positions import LedgerError, Transaction, replay
from service.portfolio.store import SNAPSHOT_VALUE_COLUMNS
from service.portfolio.valuation import Currencies, MissingPrice, Valuation, valuations
from workers import metrics
from workers.analytics.portfolio_reads import (
    MarketData,
    PortfolioRow,
    load_market_data,
    load_transactions,
    symbols_of,
)
from workers.db_retry import in_transaction

log = get_logger(__name__)
BATCH_PORTFOLIOS = 250
SNAPSHOT_COLUMNS = (
    "portfolio_id",
    "date",
    *SNAPSHOT_VALUE_COLUMNS,
    "holdings",
    "stale_prices",
)
_VALUE_COLUMNS = SNAPSHOT_COLUMNS[2:]
Progress = Callable[[int, int], Awaitable[None]]


@dataclass(slots=True)
class SnapshotOutcome:
    """What a snapshot run did."""

    portfolios: int = 0
    rows: int = 0
    changed: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    # symbol -> the oldest price date a snapshot of this run used for it instead of its date
    stale: dict[str, date] = field(default_factory=dict)
    # every "EURUSD 2025-03-07" a portfolio of this run lacked
    missing_fx: set[str] = field(default_factory=set)

    def note_stale(self, symbol: str, price_date: date) -> None:
        """Remember that a snapshot valued `symbol` at the close of `price_date`, not its date."""
        self.stale[symbol] = min(price_date, self.stale.get(symbol, price_date))


def stale_prices(row: Valuation) -> dict[str, date]:
    """The holdings of `row` valued at a close older than its date, with that close's date."""
    return {h.symbol: h.price_date for h in row.holdings if h.price_date < row.date}


def portfolio_valuations(
    portfolio: PortfolioRow,
    transactions: Sequence[Transaction],
    market: MarketData,
    *,
    dates: Sequence[date],
    previous: date | None,
) -> list[Valuation]:
    """Every snapshot of one portfolio for `dates`, in its base currency; raises on any
    problem (MissingFx lists every pair and date lacking a rate)."""
    splits = [s for symbol in symbols_of(transactions) for s in market.splits.get(symbol, ())]
    states = replay(transactions, splits, base=portfolio.base_currency)
    currencies = Currencies(
        base=portfolio.base_currency, of_symbol=market.currencies, rates=market.rates
    )
    return valuations(
        states,
        dates=dates,
        previous=previous,
        prices=market.prices,
        splits=market.splits,
        currencies=currencies,
    )


def _json_number(value: Decimal) -> float:
    return float(value)


def snapshot_record(portfolio_id: int, row: Valuation) -> tuple[Any, ...]:
    """One COPY record for portfolio_snapshots."""
    holdings = [
        {
            "symbol": h.symbol,
            "quantity": _json_number(h.quantity),
            "currency": h.currency,
            "close": _json_number(h.close),
            "fx_rate": _json_number(h.fx_rate),
            "unrealized_fx_pnl": _json_number(h.unrealized_fx_pnl),
            "price_date": h.price_date.isoformat(),
            "market_value": _json_number(h.market_value),
            "cost_basis": _json_number(h.cost_basis),
            "unrealized_pnl": _json_number(h.unrealized_pnl),
            "stale": h.price_date < row.date,
        }
        for h in row.holdings
    ]
    return (
        portfolio_id,
        row.date,
        row.total_value,
        row.market_value,
        row.cash,
        row.cost_basis,
        row.unrealized_pnl,
        row.realized_pnl,
        row.income,
        row.fees,
        row.net_invested,
        row.net_flow,
        row.day_change,
        holdings,
        {symbol: day.isoformat() for symbol, day in stale_prices(row).items()},
    )


def previous_valuation_date(first: date, calendar: TradingCalendar = NYSE) -> date:
    """The trading day before `first`: day change and flows of the first row count from it."""
    return calendar.last_trading_day_on_or_before(first - timedelta(days=1))


async def upsert_snapshots(
    connection: asyncpg.Connection, records: Sequence[tuple[Any, ...]]
) -> int:
    """Merge snapshot records (COPY into a temp table, one INSERT … ON CONFLICT); rows changed."""
    if not records:
        return 0
    await connection.execute(
        "CREATE TEMP TABLE IF NOT EXISTS incoming_snapshots "
        "(LIKE portfolio_snapshots INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    await connection.copy_records_to_table(
        "incoming_snapshots", records=records, columns=SNAPSHOT_COLUMNS
    )
    columns = ", ".join(SNAPSHOT_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _VALUE_COLUMNS)
    current = ", ".join(f"t.{c}" for c in _VALUE_COLUMNS)
    incoming = ", ".join(f"excluded.{c}" for c in _VALUE_COLUMNS)
    status: str = await connection.execute(
        f"""
        INSERT INTO portfolio_snapshots AS t ({columns})
        SELECT {columns} FROM incoming_snapshots
        ON CONFLICT (portfolio_id, date) DO UPDATE SET {updates}, computed_at = now()
        WHERE ({current}) IS DISTINCT FROM ({incoming})
        """  # noqa: S608 - column names are constants of this module
    )
    return int(status.rsplit(" ", 1)[-1])


def _portfolio_records(
    portfolio: PortfolioRow,
    transactions: Sequence[Transaction],
    market: MarketData,
    *,
    dates: Sequence[date],
    previous: date | None,
) -> tuple[list[tuple[Any, ...]], dict[str, date]]:
    """One portfolio's snapshot records, and the oldest stale price date per symbol."""
    rows = portfolio_valuations(portfolio, transactions, market, dates=dates, previous=previous)
    stale: dict[str, date] = {}
    for row in rows:
        for symbol, price_date in stale_prices(row).items():
            stale[symbol] = min(price_date, stale.get(symbol, price_date))
    return [snapshot_record(portfolio.id, row) for row in rows], stale


async def snapshot_portfolios(
    pool: asyncpg.Pool,
    portfolios: Sequence[PortfolioRow],
    *,
    dates: Sequence[date],
    progress: Progress | None = None,
    calendar: TradingCalendar = NYSE,
    retry_seconds: float = 0.0,
) -> SnapshotOutcome:
    """Compute and upsert snapshots of `portfolios` for `dates`, in batches.

    Each batch is read in one transaction and written in another, each rerun whole if
    Postgres goes away (for up to `retry_seconds`), so a portfolio's snapshots are all
    written or none."""
    outcome = SnapshotOutcome(portfolios=len(portfolios))
    if not dates or not portfolios:
        return outcome
    previous = previous_valuation_date(dates[0], calendar)
    for offset in range(0, len(portfolios), BATCH_PORTFOLIOS):
        batch = portfolios[offset : offset + BATCH_PORTFOLIOS]

        async def read(
            connection: asyncpg.Connection, batch: Sequence[PortfolioRow] = batch
        ) -> tuple[dict[int, list[Transaction]], MarketData]:
            transactions = await load_transactions(connection, [p.id for p in batch])
            symbols = set().union(*(symbols_of(t) for t in transactions.values()))
            market = await load_market_data(
                connection,
                sorted(symbols),
                start=previous,
                end=dates[-1],
                bases=sorted({p.base_currency for p in batch}),
                tx_currencies={
                    tx.currency for txs in transactions.values() for tx in txs if tx.currency
                },
            )
            return transactions, market

        transactions, market = await in_transaction(
            pool, read, retry_seconds=retry_seconds, what="snapshot inputs"
        )
        records: list[tuple[Any, ...]] = []
        for portfolio in batch:
            # Replay and valuation are CPU-bound (seconds for a long backfill): each
            # portfolio runs in a thread, so the loop keeps heartbeating and a cancel
            # stops the run after at most one portfolio.
            try:
                rows, stale = await asyncio.to_thread(
                    _portfolio_records,
                    portfolio,
                    transactions.get(portfolio.id, []),
                    market,
                    dates=dates,
                    previous=previous,
                )
            except MissingFx as exc:
                outcome.failed[portfolio.id] = str(exc)
                for missing in sorted(set(exc.missing) - outcome.missing_fx):
                    pair, day = missing.split(" ")
                    log.warning("fx rate missing", pair=pair, date=day)
                outcome.missing_fx.update(exc.missing)
                continue
            except (MissingPrice, LedgerError) as exc:
                outcome.failed[portfolio.id] = str(exc)
                log.warning("snapshot skipped", portfolio_id=portfolio.id, reason=str(exc))
                continue
            records.extend(rows)
            for symbol, price_date in stale.items():
                outcome.note_stale(symbol, price_date)

        async def write(
            connection: asyncpg.Connection, records: list[tuple[Any, ...]] = records
        ) -> int:
            return await upsert_snapshots(connection, records)

        changed = await in_transaction(pool, write, retry_seconds=retry_seconds, what="snapshots")
        metrics.ROWS_WRITTEN.labels(table="portfolio_snapshots").inc(changed)
        outcome.changed += changed
        outcome.rows += len(records)
        if progress is not None:
            await progress(min(offset + BATCH_PORTFOLIOS, len(portfolios)), len(portfolios))
    return outcome
