"""Demo data for `just dev`: two portfolios with a year of transactions on simulated prices.

"Core growth" also holds a EUR-quoted asset (SAP.DE), traded in euros at each
day's stored EURUSD close, so currency conversion shows at once. "Income" arrives
the way a user's broker history does: as a CSV file through the import path.

The closes come from the simulated exchange's deterministic series (the same
bars a market-data fetch from it would store), so snapshots, performance and
reports have something to show at once. Idempotent: a portfolio that already
has transactions is left alone.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import asyncpg

from service.core.clock import Clock, clock_from_settings, exchange_today
from service.core.database import create_pool
from service.core.logs import configure_logging, get_logger
from service.core.settings import Settings
from service.core.trading_calendar import NYSE
from service.portfolio.import_format import CSV_COLUMNS, parse_csv
from service.portfolio.recording import record_transactions
from workers.analytics import select_portfolios, snapshot_portfolios
from workers.market_data import Bar, bar_rows, upsert_bars
from workers.market_data.simulated_exchange import build_series, currency_of, price_places

log = get_logger(__name__)
BENCHMARK = "SPY"
# symbol: (asset type, sector); none of these splits in the simulated series.
ASSETS = {
    "AAPL": ("Equity", "Technology"),
    "MSFT": ("Equity", "Technology"),
    "JNJ": ("Equity", "Health Care"),
    "XOM": ("Equity", "Energy"),
    "TLT": ("ETF", "Fixed Income"),
    "AGG": ("ETF", "Fixed Income"),
    "KO": ("Equity", "Consumer Staples"),
    "JPM": ("Equity", "Financials"),
    "SAP.DE": ("Equity", "Technology"),
    "EURUSD=X": ("CURRENCY", None),
    BENCHMARK: ("ETF", "Broad Market"),
}
BASE = "USD"


@dataclass(frozen=True, slots=True)
class DemoPortfolio:
    """A demo portfolio's name, first deposit and target weights."""

    name: str
    deposit: int
    weights: dict[str, float]
    imported: bool = False


DEMO_PORTFOLIOS = (
    DemoPortfolio(
        "Core growth", 50_000, {"AAPL": 0.3, "MSFT": 0.3, "JNJ": 0.1, "XOM": 0.15, "SAP.DE": 0.1}
    ),
    DemoPortfolio(
        "Income", 30_000, {"TLT": 0.35, "AGG": 0.25, "KO": 0.2, "JPM": 0.15}, imported=True
    ),
)
_CENT = Decimal("0.01")


def _closes(symbol: str, days: list[date]) -> dict[date, Decimal]:
    series = build_series(symbol, days[-1])
    index = {day: i for i, day in enumerate(series.days)}
    return {d: Decimal(str(round(float(series.close[index[d]]), 4))) for d in days if d in index}


def demo_transactions(
    portfolio: DemoPortfolio, days: list[date], closes: dict[str, dict[date, Decimal]]
) -> list[dict[str, Any]]:
    """A year of plausible activity: an initial deposit and buys, monthly top-ups, dividends,
    a partial sale, an account fee and a withdrawal (pure; dates are trading days)."""
    txs: list[dict[str, Any]] = [{"type": "DEPOSIT", "date": days[0], "amount": portfolio.deposit}]
    held: dict[str, Decimal] = {}

    def priced(symbol: str, day: date) -> dict[str, Any]:
        """A foreign asset's transaction is in its currency at that day's stored rate."""
        currency = currency_of(symbol)
        if currency == BASE:
            return {}
        return {"currency": currency, "fx_rate": closes[f"{currency}{BASE}=X"][day]}

    def buy(symbol: str, day: date, budget: float) -> None:
        price = closes[symbol][day].quantize(_CENT)
        rate = priced(symbol, day).get("fx_rate", Decimal(1))
        quantity = (Decimal(budget) / (price * rate)).quantize(Decimal(1), rounding=ROUND_DOWN)
        if quantity > 0:
            txs.append(
                {
                    "type": "BUY",
                    "date": day,
                    "symbol": symbol,
                    "quantity": quantity,
                    "price": price,
                    "fee": Decimal(1),
                    **priced(symbol, day),
                }
            )
            held[symbol] = held.get(symbol, Decimal(0)) + quantity

    symbols = list(portfolio.weights)
    for offset, symbol in enumerate(symbols):
        buy(symbol, days[offset], portfolio.deposit * portfolio.weights[symbol])
    dividends = {s: build_series(s, days[-1]).dividends for s in symbols}
    for i, day in enumerate(days[len(symbols) :], start=len(symbols)):
        if day.month != days[i - 1].month:
            txs.append({"type": "DEPOSIT", "date": day, "amount": 1000})
            buy(symbols[day.month % len(symbols)], day, 950)
        for symbol in symbols:
            per_share = dividends[symbol].get(day)
            if per_share and held.get(symbol):
                amount = (Decimal(str(per_share)) * held[symbol]).quantize(_CENT)
                txs.append(
                    {
                        "type": "DIVIDEND",
                        "date": day,
                        "symbol": symbol,
                        "amount": amount,
                        **priced(symbol, day),
                    }
                )
        if i == 150 and held.get(symbols[1]):
            quantity = (held[symbols[1]] / 2).quantize(Decimal(1), rounding=ROUND_DOWN)
            price = closes[symbols[1]][day].quantize(_CENT)
            txs.append(
                {
                    "type": "SELL",
                    "date": day,
                    "symbol": symbols[1],
                    "quantity": quantity,
                    "price": price,
                    "fee": Decimal(1),
                    **priced(symbols[1], day),
                }
            )
            held[symbols[1]] -= quantity
        if i == 100:
            txs.append({"type": "FEE", "date": day, "amount": 25})
        if i == 200:
            txs.append({"type": "WITHDRAWAL", "date": day, "amount": 2000})
    return txs


def as_import_csv(transactions: list[dict[str, Any]]) -> str:
    """`transactions` as a broker-history file in the import format (pure)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for tx in transactions:
        cells = {**tx, "date": tx["date"].isoformat(), "note": "demo import"}
        writer.writerow(
            ["" if cells.get(name) is None else str(cells[name]) for name in CSV_COLUMNS]
        )
    return out.getvalue()


async def _store_prices(pool: asyncpg.Pool, days: list[date]) -> dict[str, dict[date, Decimal]]:
    closes: dict[str, dict[date, Decimal]] = {}
    async with pool.acquire() as connection:
        for symbol, (asset_type, sector) in ASSETS.items():
            series = build_series(symbol, days[-1])
            first = series.days.index(days[0])
            places = price_places(symbol)
            bars = [
                Bar(
                    date=series.days[i],
                    open=round(float(series.open[i]), places),
                    high=round(float(series.high[i]), places),
                    low=round(float(series.low[i]), places),
                    close=round(float(series.close[i]), places),
                    adj_close=round(float(series.adjclose[i]), places),
                    volume=int(series.volume[i]),
                )
                for i in range(first, len(series.days))
            ]
            await upsert_bars(connection, bar_rows(symbol, bars, source="yahoo"))
            await connection.execute(
                "UPDATE assets SET currency = coalesce(currency, $4), "
                "asset_type = coalesce(asset_type, $2), sector = coalesce(sector, $3) "
                "WHERE symbol = $1",
                symbol,
                asset_type,
                sector,
                currency_of(symbol),
            )
            closes[symbol] = _closes(symbol, days)
    return closes


async def seed_demo_portfolios(pool: asyncpg.Pool, *, owner_id: int, clock: Clock) -> None:
    """Create the demo portfolios (once), their prices, transactions and a year of snapshots,
    up to the last session before `clock`'s today."""
    today = exchange_today(clock)
    end = NYSE.last_trading_day_on_or_before(today - timedelta(days=1))
    days = NYSE.trading_days(end - timedelta(days=365), end)
    closes = await _store_prices(pool, days)
    async with pool.acquire() as connection, connection.transaction():
        for demo in DEMO_PORTFOLIOS:
            portfolio_id: int = await connection.fetchval(
                "INSERT INTO portfolios (owner_id, name, base_currency) VALUES ($1, $2, 'USD') "
                "ON CONFLICT (owner_id, name) DO UPDATE SET name = excluded.name RETURNING id",
                owner_id,
                demo.name,
            )
            if await connection.fetchval(
                "SELECT EXISTS (SELECT 1 FROM transactions WHERE portfolio_id = $1)", portfolio_id
            ):
                continue
            transactions = demo_transactions(demo, days, closes)
            if demo.imported:
                rows = parse_csv(as_import_csv(transactions))
                await record_transactions(
                    connection,
                    portfolio_id=portfolio_id,
                    base_currency=BASE,
                    transactions=[row.transaction for row in rows],
                )
                continue
            await connection.executemany(
                "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price, "
                "amount, fee, currency, fx_rate) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [
                    (
                        portfolio_id,
                        tx["type"],
                        tx["date"],
                        tx.get("symbol"),
                        tx.get("quantity"),
                        tx.get("price"),
                        _decimal(tx.get("amount")),
                        tx.get("fee", Decimal(0)),
                        tx.get("currency"),
                        tx.get("fx_rate"),
                    )
                    for tx in transactions
                ],
            )
    async with pool.acquire() as connection:
        portfolios = await select_portfolios(connection, portfolio_ids=None, user_id=owner_id)
    outcome = await snapshot_portfolios(pool, portfolios, dates=days)
    log.info(
        "demo portfolios seeded", owner_id=owner_id, snapshots=outcome.rows, failed=outcome.failed
    )


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


async def _seed(settings: Settings, *, owner_id: int) -> None:
    pool = await create_pool(settings, application_name="findash-demo-seed")
    try:
        await seed_demo_portfolios(pool, owner_id=owner_id, clock=clock_from_settings(settings))
    finally:
        await pool.close()


def main() -> None:
    """`python -m workers.demo_seed OWNER_ID`: seed the demo portfolios of user OWNER_ID.

    `just dev` runs this as a step of its own, so the senders' side never imports workers.
    """
    settings = Settings.from_env()
    configure_logging(service="dev", level=settings.log_level, fmt=settings.log_format)
    asyncio.run(_seed(settings, owner_id=int(sys.argv[1])))


if __name__ == "__main__":
    main()
