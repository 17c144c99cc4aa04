"""Analytics benchmarks, each against its floor in the same run (docs/BENCHMARKS.md).

1. Snapshots of 1,000 portfolios x 20 holdings for one date: findash's snapshot routine
   (bulk reads, Decimal replay, COPY + one upsert) against one set-based SQL statement.
2. Performance of a user's 10 portfolios x 5 years of daily values, end to end (read, check,
   compute, store): findash against the same reads, one vectorised numpy pass and the same write.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np

from bench.stack import running_stack
from service.core.database import create_pool
from service.core.settings import Settings
from service.core.trading_calendar import NYSE
from service.core.users import create_user
from workers.analytics.performance_run import calculate_performance
from workers.analytics.portfolio_reads import select_portfolios
from workers.analytics.snapshots import SNAPSHOT_COLUMNS, snapshot_portfolios

PORTFOLIOS, HOLDINGS, SYMBOLS = 1000, 20, 400
PERF_PORTFOLIOS, PERF_YEARS = 10, 5
SNAPSHOT_DAY = date(2025, 6, 30)
REPEATS = 5

FLOOR_SNAPSHOT_SQL = """
WITH positions AS (
    SELECT t.portfolio_id, t.symbol,
           sum(CASE WHEN t.type = 'BUY' THEN t.quantity ELSE -t.quantity END) AS quantity,
           sum(CASE WHEN t.type = 'BUY' THEN t.quantity * t.price + t.fee ELSE 0 END) AS cost
    FROM transactions t
    WHERE t.portfolio_id = ANY($1::bigint[]) AND t.date <= $2 AND t.type IN ('BUY', 'SELL')
    GROUP BY t.portfolio_id, t.symbol
), valued AS (
    SELECT p.portfolio_id, p.symbol, p.quantity, p.cost, c.close, c.date AS price_date,
           p.quantity * c.close AS value
    FROM positions p
    CROSS JOIN LATERAL (
        SELECT d.close, d.date FROM daily_prices d
        WHERE d.symbol = p.symbol AND d.date <= $2 ORDER BY d.date DESC LIMIT 1
    ) c
), cash AS (
    SELECT portfolio_id,
           sum(CASE type WHEN 'DEPOSIT' THEN amount WHEN 'BUY' THEN -(quantity * price + fee)
               ELSE 0 END) AS cash,
           sum(CASE type WHEN 'DEPOSIT' THEN amount ELSE 0 END) AS invested,
           sum(fee) AS fees,
           sum(CASE WHEN type = 'DEPOSIT' AND date > $3 THEN amount ELSE 0 END) AS flow
    FROM transactions WHERE portfolio_id = ANY($1::bigint[]) AND date <= $2
    GROUP BY portfolio_id
)
INSERT INTO portfolio_snapshots AS t (portfolio_id, date, total_value, market_value, cash,
    cost_basis, unrealized_pnl, realized_pnl, income, fees, net_invested, net_flow, day_change,
    holdings)
SELECT v.portfolio_id, $2, c.cash + sum(v.value), sum(v.value), c.cash, sum(v.cost),
       sum(v.value) - sum(v.cost), 0, 0, c.fees, c.invested, c.flow, 0,
       jsonb_agg(jsonb_build_object('symbol', v.symbol, 'quantity', v.quantity,
           'close', v.close, 'price_date', v.price_date, 'market_value', v.value,
           'cost_basis', v.cost, 'unrealized_pnl', v.value - v.cost))
FROM valued v JOIN cash c USING (portfolio_id)
GROUP BY v.portfolio_id, c.cash, c.fees, c.invested, c.flow
ON CONFLICT (portfolio_id, date) DO UPDATE SET total_value = excluded.total_value,
    market_value = excluded.market_value, cash = excluded.cash, holdings = excluded.holdings,
    computed_at = now()
WHERE (t.total_value, t.holdings) IS DISTINCT FROM (excluded.total_value, excluded.holdings)
"""


async def _timed(run: Callable[[], Awaitable[Any]], reset: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(REPEATS):
        await reset()
        started = time.perf_counter()
        await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _seed_snapshot_case(pool: asyncpg.Pool, owner: int) -> list[int]:
    rng = np.random.default_rng(7)
    days = NYSE.trading_days(SNAPSHOT_DAY - timedelta(days=400), SNAPSHOT_DAY)
    symbols = [f"BS{i:03d}" for i in range(SYMBOLS)]
    async with pool.acquire() as connection:
        await connection.executemany(
            "INSERT INTO assets (symbol, currency) VALUES ($1, 'USD') ON CONFLICT DO NOTHING",
            [(s,) for s in symbols],
        )
        walk = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (SYMBOLS, len(days))), axis=1))
        await connection.copy_records_to_table(
            "daily_prices",
            records=[
                (s, d, Decimal(f"{walk[i, j]:.4f}"), "bench")
                for i, s in enumerate(symbols)
                for j, d in enumerate(days)
            ],
            columns=("symbol", "date", "close", "source"),
        )
        ids = [
            r["id"]
            for r in await connection.fetch(
                "INSERT INTO portfolios (owner_id, name) SELECT $1, 'bench ' || g "
                "FROM generate_series(1, $2) g RETURNING id",
                owner,
                PORTFOLIOS,
            )
        ]
        records: list[tuple[Any, ...]] = []
        for pid in ids:
            start = days[int(rng.integers(0, 100))]
            records.append((pid, "DEPOSIT", start, None, None, None, Decimal(100_000), Decimal(0)))
            for symbol in rng.choice(symbols, HOLDINGS, replace=False):
                records.append(
                    (
                        pid,
                        "BUY",
                        start,
                        str(symbol),
                        Decimal(int(rng.integers(1, 50))),
                        Decimal("40.00"),
                        None,
                        Decimal(1),
                    )
                )
        await connection.copy_records_to_table(
            "transactions",
            records=records,
            columns=(
                "portfolio_id",
                "type",
                "date",
                "symbol",
                "quantity",
                "price",
                "amount",
                "fee",
            ),
        )
    return ids


async def bench_snapshots(pool: asyncpg.Pool, owner: int) -> dict[str, float]:
    """Median seconds for one date's snapshots of every portfolio, findash vs the SQL floor."""
    ids = await _seed_snapshot_case(pool, owner)
    async with pool.acquire() as connection:
        portfolios = await select_portfolios(connection, portfolio_ids=ids, user_id=None)
    previous = NYSE.last_trading_day_on_or_before(SNAPSHOT_DAY - timedelta(days=1))

    async def reset() -> None:
        await pool.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = ANY($1)", ids)

    async def ours() -> None:
        outcome = await snapshot_portfolios(pool, portfolios, dates=[SNAPSHOT_DAY])
        assert outcome.rows == PORTFOLIOS
        assert not outcome.failed

    async def floor() -> None:
        status = await pool.execute(FLOOR_SNAPSHOT_SQL, ids, SNAPSHOT_DAY, previous)
        assert status.endswith(f" {PORTFOLIOS}"), status

    return {
        "findash": await _timed(ours, reset),
        "floor": await _timed(floor, reset),
    }


async def _seed_performance_case(pool: asyncpg.Pool, owner: int, end: date) -> list[int]:
    rng = np.random.default_rng(11)
    days = NYSE.trading_days(end - timedelta(days=365 * PERF_YEARS), end)
    async with pool.acquire() as connection:
        ids = [
            r["id"]
            for r in await connection.fetch(
                "INSERT INTO portfolios (owner_id, name) SELECT $1, 'perf ' || g "
                "FROM generate_series(1, $2) g RETURNING id",
                owner,
                PERF_PORTFOLIOS,
            )
        ]
        await connection.executemany(
            "INSERT INTO transactions (portfolio_id, type, date, amount) "
            "VALUES ($1, 'DEPOSIT', $2, 10000)",
            [(pid, days[0]) for pid in ids],
        )
        records: list[tuple[Any, ...]] = []
        for pid in ids:
            values = 10_000 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, len(days))))
            for day, value in zip(days, values, strict=True):
                v = Decimal(f"{value:.2f}")
                records.append(
                    (
                        pid,
                        day,
                        v,
                        v,
                        Decimal(0),
                        v,
                        Decimal(0),
                        Decimal(0),
                        Decimal(0),
                        Decimal(0),
                        Decimal(10_000),
                        Decimal(0),
                        Decimal(0),
                        [],
                    )
                )
        await connection.copy_records_to_table(
            "portfolio_snapshots",
            records=records,
            columns=SNAPSHOT_COLUMNS,
        )
        bench = 400 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, len(days))))
        await connection.execute(
            "INSERT INTO assets (symbol) VALUES ('SPY') ON CONFLICT DO NOTHING"
        )
        await connection.copy_records_to_table(
            "daily_prices",
            records=[
                ("SPY", d, Decimal(f"{b:.4f}"), "bench") for d, b in zip(days, bench, strict=True)
            ],
            columns=("symbol", "date", "close", "source"),
        )
    return ids


def _vectorised_metrics(values: np.ndarray, bench: np.ndarray, years: np.ndarray) -> np.ndarray:
    """Every metric for all portfolios at once (rows = portfolios): the numpy floor."""
    r = values[:, 1:] / values[:, :-1] - 1.0
    wealth = np.cumprod(1 + r, axis=1)
    twr = wealth[:, -1] - 1
    vol = r.std(axis=1, ddof=1) * math.sqrt(252)
    sharpe = r.mean(axis=1) / r.std(axis=1, ddof=1) * math.sqrt(252)
    downside = np.sqrt((np.minimum(r, 0) ** 2).mean(axis=1))
    sortino = r.mean(axis=1) * 252 / (downside * math.sqrt(252))
    mdd = (wealth / np.maximum.accumulate(wealth, axis=1) - 1).min(axis=1)
    rb = bench[1:] / bench[:-1] - 1
    rc = r - r.mean(axis=1, keepdims=True)
    bc = rb - rb.mean()
    beta = (rc @ bc) / (len(rb) - 1) / rb.var(ddof=1)
    corr = (rc @ bc) / np.sqrt((rc**2).sum(axis=1) * (bc**2).sum())
    low, high = np.full(len(values), -0.9999), np.full(len(values), 1000.0)
    for _ in range(100):  # vectorised bisection of the XIRR of (-V_0, +V_end)
        mid = (low + high) / 2
        npv = -values[:, 0] + values[:, -1] / (1 + mid) ** years
        low, high = np.where(npv > 0, mid, low), np.where(npv > 0, high, mid)
    return np.stack(
        [twr, vol, sharpe, sortino, mdd, beta, corr, (low + high) / 2, r.max(axis=1), r.min(axis=1)]
    )


async def bench_performance(pool: asyncpg.Pool, owner: int, settings: Settings) -> dict[str, float]:
    """Median seconds for a user's performance end to end, findash vs reads + numpy + write."""
    end = NYSE.last_trading_day_on_or_before(date.today() - timedelta(days=1))
    ids = await _seed_performance_case(pool, owner, end)
    base = NYSE.next_trading_day_after(end - timedelta(days=365 * PERF_YEARS) - timedelta(days=1))
    async with pool.acquire() as connection:
        portfolios = await select_portfolios(connection, portfolio_ids=None, user_id=owner)
    portfolios = [p for p in portfolios if p.id in ids]

    async def nothing() -> None:
        return None

    async def ours() -> None:
        await calculate_performance(
            pool, portfolios, base=base, end=end, benchmark_symbol="SPY", risk_free_rate=0.0
        )

    async def floor() -> None:
        async with pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT portfolio_id, total_value::float8 AS v FROM portfolio_snapshots "
                "WHERE portfolio_id = ANY($1) AND date BETWEEN $2 AND $3 "
                "ORDER BY portfolio_id, date",
                ids,
                base,
                end,
            )
            bench_rows = await connection.fetch(
                "SELECT close::float8 AS c FROM daily_prices WHERE symbol = 'SPY' "
                "AND date BETWEEN $1 AND $2 ORDER BY date",
                base,
                end,
            )
        values = np.array([r["v"] for r in rows]).reshape(len(ids), -1)
        bench = np.array([r["c"] for r in bench_rows])
        years = np.full(len(ids), (end - base).days / 365)
        metrics = _vectorised_metrics(values, bench, years)
        async with pool.acquire() as connection:
            await connection.executemany(
                "INSERT INTO portfolio_performance (portfolio_id, start_date, end_date, result) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (portfolio_id, start_date, end_date) "
                "DO UPDATE SET result = excluded.result, computed_at = now()",
                [
                    (pid, base, end, {"metrics": metrics[:, i].tolist()})
                    for i, pid in enumerate(ids)
                ],
            )

    return {"findash": await _timed(ours, nothing), "floor": await _timed(floor, nothing)}


async def measure(url: str) -> dict[str, dict[str, float]]:
    """Both benchmarks against the database at `url` (migrated, empty)."""
    settings = Settings.from_env({"DATABASE_URL": url, "DATABASE_POOL_MAX": "4"})
    pool = await create_pool(settings, application_name="findash-bench")
    try:
        async with pool.acquire() as connection:
            owner = (await create_user(connection, email="bench@findash.local")).user_id
        return {
            "snapshots 1000×20, one date": await bench_snapshots(pool, owner),
            "performance 10×5y, one user": await bench_performance(pool, owner, settings),
        }
    finally:
        await pool.close()


def main() -> None:
    """Start a private stack, run both benchmarks, print a table."""
    with running_stack(durable=False) as stack:
        results = asyncio.run(measure(stack.postgres.url))
    print(f"{'benchmark':<32}{'findash s':>12}{'floor s':>12}{'ratio':>8}")  # noqa: T201
    for name, result in results.items():
        ratio = result["findash"] / result["floor"]
        print(f"{name:<32}{result['findash']:>12.3f}{result['floor']:>12.3f}{ratio:>8.2f}")  # noqa: T201


if __name__ == "__main__":
    main()
