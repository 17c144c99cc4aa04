"""Generate and store a portfolio report (the I/O around report_build and report_html)."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

import asyncpg

from service.core.settings import Settings
from workers.analytics.performance_run import calculate_performance, read_benchmark, read_series
from workers.analytics.portfolio_reads import PortfolioRow
from workers.analytics.report_build import AssetInfo, build_report
from workers.analytics.report_html import render_report_html


async def _latest_snapshot(
    connection: asyncpg.Connection, portfolio_id: int, end: date
) -> dict[str, Any] | None:
    row = await connection.fetchrow(
        "SELECT date, total_value::float8 AS total_value, cash::float8 AS cash, holdings "
        "FROM portfolio_snapshots WHERE portfolio_id = $1 AND date <= $2 "
        "ORDER BY date DESC LIMIT 1",
        portfolio_id,
        end,
    )
    if row is None:
        return None
    return {**dict(row), "date": row["date"].isoformat()}


async def _asset_info(connection: asyncpg.Connection, symbols: list[str]) -> dict[str, AssetInfo]:
    rows = await connection.fetch(
        "SELECT symbol, name, asset_type, sector FROM assets WHERE symbol = ANY($1::text[])",
        symbols,
    )
    return {
        row["symbol"]: AssetInfo(
            name=row["name"], asset_type=row["asset_type"], sector=row["sector"]
        )
        for row in rows
    }


def _report_body(report_format: str, **parts: Any) -> str:
    report = build_report(**parts)
    return render_report_html(report) if report_format == "html" else json.dumps(report)


async def generate_report(
    pool: asyncpg.Pool,
    settings: Settings,
    portfolio: PortfolioRow,
    *,
    base: date,
    end: date,
    report_format: str,
    task_id: str,
) -> dict[str, Any]:
    """Build the report, store it under `task_id` (a redelivery overwrites), return its id
    and the FX rates it lacked (`missing_fx`)."""
    run = await calculate_performance(
        pool,
        [portfolio],
        base=base,
        end=end,
        benchmark_symbol=settings.benchmark_symbol,
        risk_free_rate=settings.risk_free_rate,
    )
    performance = run.results[portfolio.id]
    async with pool.acquire() as connection:
        series = (await read_series(connection, [portfolio.id], base=base, end=end)).get(
            portfolio.id
        )
        latest = await _latest_snapshot(connection, portfolio.id, end)
        symbols = [h["symbol"] for h in latest["holdings"]] if latest else []
        assets = await _asset_info(connection, symbols)
        bench_dates, bench_closes = await read_benchmark(
            connection, settings.benchmark_symbol, base=base, end=end
        )
    # A long window's value series and its HTML are CPU work: off the loop, like the metrics.
    body = await asyncio.to_thread(
        _report_body,
        report_format,
        portfolio={
            "id": portfolio.id,
            "name": portfolio.name,
            "base_currency": portfolio.base_currency,
        },
        performance=performance,
        latest=latest,
        series=series,
        assets=assets,
        benchmark_dates=bench_dates,
        benchmark_closes=bench_closes,
        missing_fx=run.missing_fx,
    )
    async with pool.acquire() as connection:
        report_id: int = await connection.fetchval(
            """
            INSERT INTO portfolio_reports (portfolio_id, task_id, format, start_date, end_date,
                                           body)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (task_id) DO UPDATE SET body = excluded.body, format = excluded.format,
                start_date = excluded.start_date, end_date = excluded.end_date
            RETURNING id
            """,
            portfolio.id,
            task_id,
            report_format,
            date.fromisoformat(performance["start"]),
            end,
            body,
        )
    return {
        "report_id": report_id,
        "portfolio_id": portfolio.id,
        "format": report_format,
        "start": performance["start"],
        "end": end.isoformat(),
        "missing_fx": sorted(run.missing_fx),
    }
