"""The analytics task bodies: validate kwargs, pick portfolios, delegate, summarise."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from service.core.contracts import (
    CalculatePortfolioPerformance,
    CreatePortfolioSnapshot,
    FetchMarketData,
    GeneratePortfolioReport,
)
from service.core.logs import get_logger
from service.core.market_closures import load_trading_calendar
from service.core.publisher import TaskPublisher
from service.portfolio.fx import MAX_RATE_AGE_DAYS
from workers.analytics.performance_run import calculate_performance
from workers.analytics.portfolio_reads import select_portfolios
from workers.analytics.report_run import generate_report
from workers.analytics.snapshots import snapshot_portfolios
from workers.db_retry import in_transaction
from workers.runtime import TaskContext

log = get_logger(__name__)


class PortfolioNotFound(LookupError):
    """The portfolio does not exist (or is not the given user's)."""


async def fetch_missing_rates(
    publisher: TaskPublisher, missing: set[str] | frozenset[str]
) -> str | None:
    """Ask for the pairs behind `missing` ("EURUSD 2025-03-07") over their dates, so the
    next snapshot or performance run finds them; the fetch task's id, None if nothing.

    A rate is missing when no close of its pair lies within MAX_RATE_AGE_DAYS before the
    date, so the fetch starts that much earlier: the gap is refilled from its first day."""
    if not missing:
        return None
    pairs = sorted({f"{label.split(' ')[0]}=X" for label in missing})
    days = [date.fromisoformat(label.split(" ")[1]) for label in missing]
    start = min(days) - timedelta(days=MAX_RATE_AGE_DAYS)
    task_id = str(uuid.uuid4())
    await publisher.publish(
        FetchMarketData(symbols=pairs, start=start, end=max(days)), task_id=task_id
    )
    log.info("fetching missing fx rates", pairs=pairs, task_id=task_id)
    return task_id


async def create_portfolio_snapshot(
    ctx: TaskContext, params: CreatePortfolioSnapshot
) -> dict[str, Any]:
    """Snapshot the portfolios (named, the user's, or all) for one date or a range."""
    retry_seconds = ctx.settings.database_retry_seconds
    calendar = await in_transaction(
        ctx.pool, load_trading_calendar, retry_seconds=retry_seconds, what="calendar"
    )
    dates = params.valuation_dates(now=ctx.clock(), calendar=calendar)
    portfolios = await in_transaction(
        ctx.pool,
        lambda connection: select_portfolios(
            connection, portfolio_ids=params.portfolio_ids, user_id=params.user_id
        ),
        retry_seconds=retry_seconds,
        what="portfolios",
    )
    if params.portfolio_ids is not None and len(portfolios) != len(set(params.portfolio_ids)):
        missing = sorted(set(params.portfolio_ids) - {p.id for p in portfolios})
        raise PortfolioNotFound(f"portfolios not found: {missing}")

    async def progress(done: int, total: int) -> None:
        await ctx.report_progress(current=done, total=total, message="portfolios snapshotted")

    outcome = await snapshot_portfolios(
        ctx.pool,
        portfolios,
        dates=dates,
        progress=progress,
        calendar=calendar,
        retry_seconds=retry_seconds,
    )
    fx_fetch = await fetch_missing_rates(ctx.publisher, outcome.missing_fx)
    log.info(
        "snapshots written",
        portfolios=outcome.portfolios,
        rows=outcome.rows,
        changed=outcome.changed,
        failed=len(outcome.failed),
        stale=len(outcome.stale),
    )
    return {
        "portfolios": outcome.portfolios,
        "dates": len(dates),
        "start": dates[0].isoformat() if dates else None,
        "end": dates[-1].isoformat() if dates else None,
        "snapshots": outcome.rows,
        "changed": outcome.changed,
        "failed": {str(pid): reason for pid, reason in outcome.failed.items()},
        "stale_prices": {symbol: day.isoformat() for symbol, day in sorted(outcome.stale.items())},
        "missing_fx": sorted(outcome.missing_fx),
        "fx_fetch_task_id": fx_fetch,
    }


async def calculate_portfolio_performance(
    ctx: TaskContext, params: CalculatePortfolioPerformance
) -> dict[str, Any]:
    """Compute and store the performance of one portfolio, of all a user's, or of all; the
    rates its snapshots lacked are listed and fetched, as a snapshot run does."""
    base, end = params.window(today=ctx.today())
    async with ctx.pool.acquire() as connection:
        calendar = await load_trading_calendar(connection)
        portfolios = await select_portfolios(
            connection,
            portfolio_ids=[params.portfolio_id] if params.portfolio_id else None,
            user_id=params.user_id,
        )
    if params.portfolio_id is not None and not portfolios:
        raise PortfolioNotFound(f"portfolio {params.portfolio_id} not found")
    await ctx.report_progress(current=0, total=len(portfolios), message="computing")
    run = await calculate_performance(
        ctx.pool,
        portfolios,
        base=base,
        end=end,
        benchmark_symbol=ctx.settings.benchmark_symbol,
        risk_free_rate=ctx.settings.risk_free_rate,
        calendar=calendar,
    )
    await ctx.report_progress(current=len(portfolios), total=len(portfolios), message="stored")
    fx_fetch = await fetch_missing_rates(ctx.publisher, run.missing_fx)
    return {
        "start": base.isoformat(),
        "end": end.isoformat(),
        "results": [run.results[p.id] for p in portfolios],
        "missing_fx": sorted(run.missing_fx),
        "fx_fetch_task_id": fx_fetch,
    }


async def generate_portfolio_report(
    ctx: TaskContext, params: GeneratePortfolioReport
) -> dict[str, Any]:
    """Build a JSON or HTML report for one portfolio and store it; returns the report id,
    and lists and fetches the rates it lacked, as a performance run does."""
    base, end = params.window(today=ctx.today())
    async with ctx.pool.acquire() as connection:
        portfolios = await select_portfolios(
            connection, portfolio_ids=[params.portfolio_id], user_id=params.user_id
        )
    if not portfolios:
        raise PortfolioNotFound(f"portfolio {params.portfolio_id} not found")
    report = await generate_report(
        ctx.pool,
        ctx.settings,
        portfolios[0],
        base=base,
        end=end,
        report_format=params.format,
        task_id=ctx.task_id,
    )
    fx_fetch = await fetch_missing_rates(ctx.publisher, set(report["missing_fx"]))
    return {**report, "fx_fetch_task_id": fx_fetch}
