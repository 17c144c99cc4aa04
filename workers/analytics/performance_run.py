"""Performance of portfolios over a window: read daily values, fill gaps, compute, store.

Daily values come from the snapshots; a portfolio missing any trading day of
the window (since its inception) has its snapshots computed first, so the
result never rests on a partial series.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg

from service.core.logs import get_logger
from service.core.trading_calendar import NYSE, TradingCalendar
from workers.analytics.performance import (
    METRIC_NAMES,
    DailySeries,
    compute_performance,
    from_inception,
)
from workers.analytics.portfolio_reads import PortfolioRow
from workers.analytics.snapshots import snapshot_portfolios

log = get_logger(__name__)


async def read_series(
    connection: asyncpg.Connection,
    portfolio_ids: Sequence[int],
    *,
    base: date,
    end: date,
    trading_days: Sequence[date] | None = None,
) -> dict[int, DailySeries]:
    """Trading-day values and flows of each portfolio in [base, end]."""
    rows = await connection.fetch(
        """
        SELECT portfolio_id, array_agg(date ORDER BY date) AS dates,
               array_agg(total_value::float8 ORDER BY date) AS values,
               array_agg(net_flow::float8 ORDER BY date) AS flows
        FROM portfolio_snapshots
        WHERE portfolio_id = ANY($1::bigint[]) AND date BETWEEN $2 AND $3
        GROUP BY portfolio_id
        """,
        list(portfolio_ids),
        base,
        end,
    )
    trading = set(trading_days if trading_days is not None else NYSE.trading_days(base, end))
    series: dict[int, DailySeries] = {}
    for row in rows:
        dates, values, flows = row["dates"], row["values"], row["flows"]
        keep = [i for i, day in enumerate(dates) if day in trading]
        if len(keep) != len(dates):  # single-date snapshots of weekends and holidays
            dates = [dates[i] for i in keep]
            values = [values[i] for i in keep]
            flows = [flows[i] for i in keep]
        series[row["portfolio_id"]] = DailySeries(
            dates=tuple(dates), values=tuple(values), flows=tuple(flows)
        )
    return series


async def inception_dates(
    connection: asyncpg.Connection, portfolio_ids: Sequence[int]
) -> dict[int, date]:
    """Each portfolio's first transaction date."""
    rows = await connection.fetch(
        "SELECT portfolio_id, min(date) AS first FROM transactions "
        "WHERE portfolio_id = ANY($1::bigint[]) GROUP BY portfolio_id",
        list(portfolio_ids),
    )
    return {row["portfolio_id"]: row["first"] for row in rows}


async def read_benchmark(
    connection: asyncpg.Connection, symbol: str, *, base: date, end: date
) -> tuple[list[date], list[float]]:
    """The benchmark's total-return closes (dividend-adjusted when known) in [base, end]."""
    rows = await connection.fetch(
        "SELECT date, coalesce(adj_close, close)::float8 AS close FROM daily_prices "
        "WHERE symbol = $1 AND date BETWEEN $2 AND $3 ORDER BY date",
        symbol,
        base,
        end,
    )
    return [row["date"] for row in rows], [row["close"] for row in rows]


def _all_unavailable(reason: str) -> tuple[dict[str, Any], dict[str, str]]:
    return dict.fromkeys(METRIC_NAMES), dict.fromkeys(METRIC_NAMES, reason)


@dataclass(frozen=True, slots=True)
class PerformanceRun:
    """Each portfolio's stored result by id, and every rate (`EURUSD 2025-03-07`) the
    snapshots computed for it lacked."""

    results: dict[int, dict[str, Any]]
    missing_fx: frozenset[str] = frozenset()


async def ensure_series(
    pool: asyncpg.Pool,
    portfolios: Sequence[PortfolioRow],
    *,
    base: date,
    end: date,
    calendar: TradingCalendar = NYSE,
) -> tuple[dict[int, DailySeries], dict[int, str], frozenset[str]]:
    """Complete daily series per portfolio, computing missing snapshots; reasons for the rest,
    and the rates those snapshots lacked."""
    ids = [p.id for p in portfolios]
    trading = calendar.trading_days(base, end)
    async with pool.acquire() as connection:
        inception = await inception_dates(connection, ids)
        series = await read_series(connection, ids, base=base, end=end, trading_days=trading)
    problems: dict[int, str] = {}
    missing_fx: frozenset[str] = frozenset()
    incomplete = []
    for portfolio in portfolios:
        first = inception.get(portfolio.id)
        if first is None or first > end:
            problems[portfolio.id] = "the portfolio holds nothing in the window"
            continue
        expected = [d for d in trading if d >= first]
        have = series.get(portfolio.id)
        if have is None or list(have.dates) != expected:
            incomplete.append(portfolio)
    if incomplete:
        outcome = await snapshot_portfolios(pool, incomplete, dates=trading, calendar=calendar)
        problems.update(outcome.failed)
        missing_fx = frozenset(outcome.missing_fx)
        async with pool.acquire() as connection:
            series.update(
                await read_series(
                    connection,
                    [p.id for p in incomplete],
                    base=base,
                    end=end,
                    trading_days=trading,
                )
            )
    return {pid: s for pid, s in series.items() if pid not in problems}, problems, missing_fx


def portfolio_performance(
    portfolio_id: int,
    window: DailySeries | None,
    *,
    problem: str | None,
    base: date,
    end: date,
    benchmark_symbol: str,
    benchmark_dates: Sequence[date],
    benchmark_closes: Sequence[float],
    risk_free_rate: float,
    calendar: TradingCalendar = NYSE,
) -> dict[str, Any]:
    """One portfolio's stored performance result over [base, end], from its daily series
    (None, or empty, when it has none: every metric is then unavailable, for `problem`)."""
    annualised = False
    if window is None or not window.dates:
        metrics, unavailable = _all_unavailable(problem or "no daily values in the window")
        start = base
    else:
        if window.dates[0] > base:  # the portfolio began inside the window
            before = calendar.last_trading_day_on_or_before(window.dates[0] - timedelta(days=1))
            window = from_inception(window, day_before=before)
        outcome = compute_performance(
            window,
            benchmark_dates=benchmark_dates,
            benchmark_closes=benchmark_closes,
            risk_free_annual=risk_free_rate,
        )
        metrics, unavailable = outcome.metrics, outcome.unavailable
        annualised = outcome.total_return_annualised
        start = window.dates[0]
        if "beta" in unavailable and not benchmark_dates:
            reason = f"no closes for benchmark {benchmark_symbol} in the window"
            unavailable["beta"] = unavailable["correlation"] = reason
    return {
        "portfolio_id": portfolio_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "metrics": metrics,
        "unavailable": unavailable,
        "total_return_annualised": annualised,
        "benchmark": benchmark_symbol,
        "risk_free_rate": risk_free_rate,
    }


async def calculate_performance(
    pool: asyncpg.Pool,
    portfolios: Sequence[PortfolioRow],
    *,
    base: date,
    end: date,
    benchmark_symbol: str,
    risk_free_rate: float,
    calendar: TradingCalendar = NYSE,
) -> PerformanceRun:
    """Compute and store each portfolio's performance result; returns them by portfolio id,
    with the rates that were missing."""
    series, problems, missing_fx = await ensure_series(
        pool, portfolios, base=base, end=end, calendar=calendar
    )
    async with pool.acquire() as connection:
        bench_dates, bench_closes = await read_benchmark(
            connection, benchmark_symbol, base=base, end=end
        )
    if not bench_dates:
        log.warning("benchmark has no closes", symbol=benchmark_symbol, start=base, end=end)
    results: dict[int, dict[str, Any]] = {}
    for portfolio in portfolios:
        # The metrics are numpy over the whole window (seconds for many long windows): each
        # portfolio runs in a thread, so the loop keeps heartbeating and a cancel stops the
        # run after at most one portfolio.
        results[portfolio.id] = await asyncio.to_thread(
            portfolio_performance,
            portfolio.id,
            series.get(portfolio.id),
            problem=problems.get(portfolio.id),
            base=base,
            end=end,
            benchmark_symbol=benchmark_symbol,
            benchmark_dates=bench_dates,
            benchmark_closes=bench_closes,
            risk_free_rate=risk_free_rate,
            calendar=calendar,
        )
        # Values, TWR, MWR and the risk metrics are all of the series in the base currency.
        results[portfolio.id]["currency"] = portfolio.base_currency
    async with pool.acquire() as connection, connection.transaction():
        await connection.executemany(
            """
            INSERT INTO portfolio_performance (portfolio_id, start_date, end_date, result)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (portfolio_id, start_date, end_date)
            DO UPDATE SET result = excluded.result, computed_at = now()
            """,
            [(pid, date.fromisoformat(r["start"]), end, r) for pid, r in results.items()],
        )
    return PerformanceRun(results=results, missing_fx=missing_fx)
