"""Task bodies: fetch_market_data (chunked fan-out), its helper, update_portfolio_prices,
fetch_asset_info. They orchestrate; planning, parsing and storage live elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import asyncpg

from service.core.cancellation import request_cancel
from service.core.contracts import (
    FetchAssetInfo,
    FetchMarketData,
    FetchMarketDataChunk,
    StoreSessionCloses,
    UpdatePortfolioPrices,
)
from service.core.logs import get_logger
from service.core.market_closures import load_trading_calendar
from service.core.rates import parse_rate
from service.core.redis_keys import cancel_key
from service.core.settings import Settings
from service.portfolio.fx import is_pair, needed_pairs
from workers import metrics
from workers.db_retry import in_transaction
from workers.market_data.auto_dividends import follow_dividends
from workers.market_data.failover import Failover, SymbolFailed, count_symbol_failure
from workers.market_data.fanout import RENEW_SECONDS, FetchJob
from workers.market_data.fetch import ChunkFetcher, Failure, FetchResult
from workers.market_data.plan import (
    Window,
    chunk_size_for,
    chunked,
    helper_count,
    requested_window,
)
from workers.market_data.providers.registry import process_slots
from workers.market_data.stale_snapshots import resnapshot_stale
from workers.market_data.store import upsert_asset_info, upsert_quotes
from workers.market_data.types import Quote
from workers.runtime import TaskContext, TaskFailed

log = get_logger(__name__)
PROGRESS_INTERVAL_SECONDS = 0.25
IDLE_POLL_SECONDS = 0.2
QUOTE_BATCH = 200
# How far back a session-close fetch looks: enough to repair a few missed sessions.
CLOSE_WINDOW_DAYS = 10


class JobCancelled(Exception):
    """The fetch job this chunk belongs to was cancelled."""


Tick = Callable[[], Awaitable[None]]
# Fetches and stores one chunk of symbols: (symbols, on_symbol, before_write) -> result.
Runner = Callable[[list[str], Tick, Tick | None], Awaitable[FetchResult]]


def _history_runner(ctx: TaskContext, wanted: Window) -> Runner:
    fetcher = _fetcher(ctx)

    async def run(symbols: list[str], on_symbol: Tick, before_write: Tick | None) -> FetchResult:
        return await fetcher.run(symbols, wanted, on_symbol=on_symbol, before_write=before_write)

    return run


def _quote_runner(ctx: TaskContext) -> Runner:
    failover = _failover(ctx)

    async def run(symbols: list[str], on_symbol: Tick, before_write: Tick | None) -> FetchResult:
        result = FetchResult(requested=len(symbols))
        for i in range(0, len(symbols), QUOTE_BATCH):
            batch = symbols[i : i + QUOTE_BATCH]
            found, missing = await failover.quotes(batch)
            if before_write is not None:
                await before_write()
            written = await in_transaction(
                ctx.pool,
                functools.partial(_write_quotes, quotes=list(found.values())),
                retry_seconds=ctx.settings.database_retry_seconds,
                what="quotes",
            )
            metrics.ROWS_WRITTEN.labels(table="latest_quotes").inc(written)
            for failure in missing.values():
                count_symbol_failure(failure)
            result.fetched += len(found)
            result.rows_written += len(found)
            result.failed.extend(
                Failure(symbol=s, reason=f.reason) for s, f in sorted(missing.items())
            )
            for _ in batch:
                await on_symbol()
        return result

    return run


async def _write_quotes(connection: asyncpg.Connection, *, quotes: list[tuple[Quote, str]]) -> int:
    return await upsert_quotes(connection, quotes)


def _runner_for(ctx: TaskContext, spec: dict[str, Any]) -> Runner:
    """The runner a fan-out job's spec names: quotes, or history over a window."""
    if spec.get("kind") == "quotes":
        return _quote_runner(ctx)
    return _history_runner(
        ctx, Window(date.fromisoformat(spec["start"]), date.fromisoformat(spec["end"]))
    )


def _failover(ctx: TaskContext) -> Failover:
    slots = process_slots(ctx.settings, session=ctx.session, redis=ctx.redis, clock=ctx.clock)
    return Failover(
        slots, budget=ctx.settings.market_data_retry_budget_seconds, rng=random.Random()
    )


def _fetcher(ctx: TaskContext) -> ChunkFetcher:
    return ChunkFetcher(
        pool=ctx.pool,
        failover=_failover(ctx),
        overlap_days=ctx.settings.market_data_overlap_days,
        clock=ctx.clock,
        retry_seconds=ctx.settings.database_retry_seconds,
    )


def _chunk_size(settings: Settings) -> int:
    provider = settings.market_data_providers[0] if settings.market_data_providers else "yahoo"
    return chunk_size_for(
        configured=settings.market_data_chunk_size,
        provider=provider,
        request_interval=parse_rate(getattr(settings, f"{provider}_rate_limit")).interval,
        time_limit=settings.celery_soft_time_limit,
    )


async def _report_every(
    ctx: TaskContext, read: Callable[[], Awaitable[int]], *, total: int, message: str
) -> None:
    """Publish progress whenever it moves, at most every PROGRESS_INTERVAL_SECONDS."""
    last = -1
    while True:
        current = min(await read(), total)
        if current != last:
            await ctx.report_progress(current=current, total=total, message=message)
            last = current
        await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)


async def fetch_market_data(ctx: TaskContext, task: FetchMarketData) -> dict[str, Any]:
    """Fetch and store daily history for the symbols; one result for the whole request."""
    symbols = task.symbols
    wanted = requested_window(period=task.period, start=task.start, end=task.end, today=ctx.today())
    started = time.monotonic()
    result, chunks = await _run(ctx, symbols, _history_spec(wanted), "fetching")
    # The pairs converting these symbols into the portfolios' base currencies come along;
    # they are reported apart, so `requested` stays what the caller asked for.
    pairs = await _pairs_for(ctx, symbols)
    both = FetchResult()
    both.merge(result)
    fx_result = FetchResult()
    if pairs:
        fx_result, _ = await _run(ctx, pairs, _history_spec(wanted), "fetching FX rates")
        both.merge(fx_result)
        # The task ends showing the caller's symbols done, not the pairs' count.
        await ctx.report_progress(current=len(symbols), total=len(symbols), message="done")
    rewrites = await _rewrite_stale_snapshots(ctx, [*symbols, *pairs], both)
    dividend_portfolios = await _follow_dividends(ctx, [*symbols, *pairs], both)
    log.info(
        "market data fetched",
        snapshot_rewrites=len(rewrites),
        dividend_portfolios=dividend_portfolios,
        requested=result.requested,
        fetched=result.fetched,
        rows_written=result.rows_written,
        failed=len(result.failed),
        chunks=chunks,
        seconds=round(time.monotonic() - started, 3),
    )
    return {
        "requested": result.requested,
        "fetched": result.fetched,
        "rows_written": result.rows_written,
        "failed": [{"symbol": f.symbol, "reason": f.reason} for f in result.failed],
        "fx_pairs": {
            "requested": pairs,
            "fetched": fx_result.fetched,
            "rows_written": fx_result.rows_written,
            "failed": [{"symbol": f.symbol, "reason": f.reason} for f in fx_result.failed],
        },
    }


async def _pairs_for(ctx: TaskContext, symbols: list[str]) -> list[str]:
    """The FX pairs that convert `symbols`' stored currencies into every portfolio's base
    currency, less those in `symbols`."""
    async with ctx.pool.acquire() as connection:
        currencies = [
            row["currency"]
            for row in await connection.fetch(
                "SELECT DISTINCT currency FROM assets "
                "WHERE symbol = ANY($1::text[]) AND currency IS NOT NULL",
                [s for s in symbols if not is_pair(s)],
            )
        ]
        bases = [
            row["base_currency"]
            for row in await connection.fetch("SELECT DISTINCT base_currency FROM portfolios")
        ]
    asked = set(symbols)
    wanted = {pair for base in bases for pair in needed_pairs(currencies, base=base)}
    return sorted(wanted - asked)


def _history_spec(wanted: Window) -> dict[str, Any]:
    return {"kind": "history", "start": wanted.start.isoformat(), "end": wanted.end.isoformat()}


async def _run(
    ctx: TaskContext, symbols: list[str], spec: dict[str, Any], message: str
) -> tuple[FetchResult, int]:
    """Run the job `spec` names over `symbols`: in this task when one chunk fits its time
    budget, else fanned out across workers; the result and the number of chunks."""
    chunks = chunked(symbols, _chunk_size(ctx.settings))
    if len(chunks) <= 1:
        return await _run_in_process(ctx, symbols, _runner_for(ctx, spec), message), len(chunks)
    return await _run_fanned_out(ctx, chunks, spec, message), len(chunks)


async def _rewrite_stale_snapshots(
    ctx: TaskContext, symbols: list[str], result: FetchResult
) -> list[dict[str, object]]:
    """Re-queue snapshots valued with a stale price of a symbol this run stored."""
    failed = {f.symbol for f in result.failed}
    return await resnapshot_stale(
        ctx.pool, ctx.publisher, symbols=[s for s in symbols if s not in failed]
    )


async def _follow_dividends(ctx: TaskContext, symbols: list[str], result: FetchResult) -> int:
    """Update the generated dividends of `auto_dividends` portfolios holding a symbol this
    run stored; how many portfolios changed."""
    failed = {f.symbol for f in result.failed}
    return await follow_dividends(
        ctx.pool,
        symbols=[s for s in symbols if s not in failed],
        today=ctx.today(),
        retry_seconds=ctx.settings.database_retry_seconds,
    )


async def _run_in_process(
    ctx: TaskContext, symbols: list[str], runner: Runner, message: str
) -> FetchResult:
    done = 0

    async def tick() -> None:
        nonlocal done
        done += 1

    async def read() -> int:
        return done

    reporter = asyncio.ensure_future(_report_every(ctx, read, total=len(symbols), message=message))
    try:
        result = await runner(symbols, tick, None)
    finally:
        reporter.cancel()
    await ctx.report_progress(current=len(symbols), total=len(symbols), message="done")
    return result


async def _run_fanned_out(
    ctx: TaskContext, chunks: list[list[str]], spec: dict[str, Any], message: str
) -> FetchResult:
    total = sum(len(chunk) for chunk in chunks)
    job = FetchJob(ctx.redis, ctx.task_id)
    await job.create(chunks, spec)
    helpers = helper_count(len(chunks), max_helpers=ctx.settings.market_data_max_helpers)
    helper_ids = [str(uuid.uuid4()) for _ in range(helpers)]
    for helper_id in helper_ids:
        await ctx.publisher.publish(FetchMarketDataChunk(job_id=job.job_id), task_id=helper_id)
    reporter = asyncio.ensure_future(
        _report_every(ctx, job.done, total=total, message=f"{message} in {len(chunks)} chunks")
    )
    try:
        await _work_through(ctx, job, _runner_for(ctx, spec), wait_for_others=True)
        results = await job.results()
    except BaseException:
        await job.stop()
        for helper_id in helper_ids:
            await request_cancel(ctx.redis, helper_id)
        raise
    finally:
        reporter.cancel()
    await job.drop()
    merged = FetchResult()
    for index in sorted(results):
        merged.merge(_decode_result(results[index]))
    await ctx.report_progress(current=total, total=total, message="done")
    return merged


def _decode_result(raw: dict[str, Any]) -> FetchResult:
    return FetchResult(
        requested=raw["requested"],
        fetched=raw["fetched"],
        rows_written=raw["rows_written"],
        failed=[Failure(symbol=f["symbol"], reason=f["reason"]) for f in raw["failed"]],
    )


async def _work_through(
    ctx: TaskContext, job: FetchJob, runner: Runner, *, wait_for_others: bool
) -> int:
    """Claim and run chunks until none is left; the parent also waits for other claimants."""
    ran = 0
    while True:
        claimed = await job.claim()
        if claimed is None:
            if not wait_for_others or await job.finished():
                return ran
            await asyncio.sleep(IDLE_POLL_SECONDS)
            continue
        index, symbols = claimed
        renewer = asyncio.ensure_future(_renew(job, index))
        unreported = 0
        reported_at = time.monotonic()
        try:

            async def tick() -> None:
                # Progress is shown every 0.25 s, so count symbols locally in between.
                nonlocal unreported, reported_at
                unreported += 1
                if time.monotonic() - reported_at >= PROGRESS_INTERVAL_SECONDS:
                    await job.add_done(unreported)
                    unreported, reported_at = 0, time.monotonic()

            async def still_wanted() -> None:
                # A helper's own cancel flag is polled every 0.2 s by its runtime; checking
                # the job's flag right before each write closes that window.
                if await ctx.redis.exists(cancel_key(job.job_id)):
                    raise JobCancelled(job.job_id)

            result = await runner(symbols, tick, still_wanted)
        finally:
            renewer.cancel()
        await job.add_done(unreported)
        await job.complete(
            index,
            {
                "requested": result.requested,
                "fetched": result.fetched,
                "rows_written": result.rows_written,
                "failed": [{"symbol": f.symbol, "reason": f.reason} for f in result.failed],
            },
        )
        ran += 1


async def _renew(job: FetchJob, index: int) -> None:
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        with contextlib.suppress(OSError):
            await job.renew(index)


async def fetch_market_data_chunk(ctx: TaskContext, task: FetchMarketDataChunk) -> dict[str, Any]:
    """Help a parent fetch: run its unclaimed chunks until none is left."""
    job_id = task.job_id
    job = FetchJob(ctx.redis, job_id)
    spec = await job.spec()
    if spec is None or await ctx.redis.exists(cancel_key(job_id)):
        return {"job_id": job_id, "chunks": 0}
    try:
        ran = await _work_through(ctx, job, _runner_for(ctx, spec), wait_for_others=False)
    except JobCancelled:
        log.info("fetch job cancelled: helper stops", job_id=job_id)
        return {"job_id": job_id, "chunks": 0, "cancelled": True}
    return {"job_id": job_id, "chunks": ran}


async def _portfolio_symbols(
    ctx: TaskContext, *, portfolio_ids: list[int] | None, user_id: int | None
) -> list[str]:
    """Symbols with a positive position in `portfolio_ids` (only the user's own when
    `user_id` is given), or in all of the user's portfolios when no ids are given, or in
    every portfolio when neither is; deduplicated, with stored splits applied."""
    async with ctx.pool.acquire() as connection:
        # Quantities in today's shares: a trade before a split counts times that split's
        # ratio, so selling 15 after a 2:1 split of 10 still leaves a position.
        rows = await connection.fetch(
            """
            SELECT DISTINCT held.symbol FROM (
                SELECT t.portfolio_id, t.symbol
                FROM transactions t JOIN portfolios p ON p.id = t.portfolio_id
                LEFT JOIN LATERAL (
                    SELECT exp(sum(ln(s.numerator / s.denominator))) AS factor
                    FROM splits s WHERE s.symbol = t.symbol AND s.date > t.date
                ) AS later ON true
                WHERE t.type IN ('BUY', 'SELL')
                  AND ($1::bigint[] IS NULL OR p.id = ANY($1::bigint[]))
                  AND ($2::bigint IS NULL OR p.owner_id = $2::bigint)
                GROUP BY t.portfolio_id, t.symbol
                HAVING sum(
                    CASE t.type WHEN 'BUY' THEN t.quantity ELSE -t.quantity END
                    * coalesce(later.factor, 1)
                ) > 1e-9
            ) AS held
            ORDER BY held.symbol
            """,
            portfolio_ids or None,
            user_id,
        )
    return [str(row["symbol"]).upper() for row in rows]


async def _stale_quote_symbols(ctx: TaskContext) -> list[str]:
    """Symbols whose stored quote is older than `QUOTE_STALE_SECONDS`."""
    cutoff = ctx.clock() - timedelta(seconds=ctx.settings.quote_stale_seconds)
    async with ctx.pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT symbol FROM latest_quotes WHERE coalesce(market_time, updated_at) < $1",
            cutoff,
        )
    return [str(row["symbol"]) for row in rows]


async def update_portfolio_prices(ctx: TaskContext, task: UpdatePortfolioPrices) -> dict[str, Any]:
    """Refresh latest quotes for the symbols asked, or for every symbol the portfolios hold
    (`portfolio_ids`, else all of `user_id`'s, else every portfolio's), deduplicated.

    With no arguments at all (the scheduled jobs) it also refreshes the benchmark and every
    stored quote older than `QUOTE_STALE_SECONDS`. A list too long for one task's time
    budget is chunked across workers, as `fetch_market_data` is.
    """
    portfolio_ids, symbols, user_id = task.portfolio_ids, task.symbols, task.user_id
    held = (
        []
        if symbols and not portfolio_ids
        else await _portfolio_symbols(ctx, portfolio_ids=portfolio_ids, user_id=user_id)
    )
    extra: list[str] = []
    if task == UpdatePortfolioPrices():
        extra = [ctx.settings.benchmark_symbol, *await _stale_quote_symbols(ctx)]
    wanted = sorted({*(s.upper() for s in symbols or []), *held, *extra})
    result, chunks = await _run(ctx, wanted, {"kind": "quotes"}, "quotes")
    log.info(
        "quotes refreshed",
        requested=result.requested,
        updated=result.fetched,
        failed=len(result.failed),
        chunks=chunks,
    )
    return {
        "requested": result.requested,
        "updated": result.fetched,
        "failed": [{"symbol": f.symbol, "reason": f.reason} for f in result.failed],
    }


async def store_session_closes(ctx: TaskContext, task: StoreSessionCloses) -> dict[str, Any]:
    """Store the last completed session's bar for every held symbol and the benchmark, then
    have snapshots valued with a stale price of any symbol now stored rewritten."""
    async with ctx.pool.acquire() as connection:
        calendar = await load_trading_calendar(connection)
    session = task.session(now=ctx.clock(), calendar=calendar)
    held = await _portfolio_symbols(ctx, portfolio_ids=None, user_id=None)
    symbols = sorted({*held, ctx.settings.benchmark_symbol})
    symbols = sorted({*symbols, *await _pairs_for(ctx, symbols)})
    # The incremental planner asks only for what is missing from the stored history.
    wanted = Window(session - timedelta(days=CLOSE_WINDOW_DAYS), session)
    result, _ = await _run(ctx, symbols, _history_spec(wanted), "closes")
    rewrites = await _rewrite_stale_snapshots(ctx, symbols, result)
    dividend_portfolios = await _follow_dividends(ctx, symbols, result)
    log.info(
        "session closes stored",
        dividend_portfolios=dividend_portfolios,
        session=session.isoformat(),
        requested=result.requested,
        failed=len(result.failed),
        snapshot_rewrites=len(rewrites),
    )
    return {
        "session": session.isoformat(),
        "requested": result.requested,
        "fetched": result.fetched,
        "rows_written": result.rows_written,
        "failed": [{"symbol": f.symbol, "reason": f.reason} for f in result.failed],
        "snapshot_rewrites": rewrites,
    }


class AssetInfoUnavailable(TaskFailed):
    """Every provider failed to give a symbol's reference data; the message has their
    reasons."""


async def fetch_asset_info(ctx: TaskContext, task: FetchAssetInfo) -> dict[str, Any]:
    """Fetch and store one asset's reference data; when every provider fails, the task
    fails (AssetInfoUnavailable) with each provider's reason."""
    symbol = task.symbol
    try:
        info, source = await _failover(ctx).asset_info(symbol)
    except SymbolFailed as failed:
        raise AssetInfoUnavailable(
            f"no provider gave asset info for {symbol} ({failed.kind.value}): {failed.reason}"
        ) from None
    async with ctx.pool.acquire() as connection:
        await upsert_asset_info(connection, info, source=source)
    return {
        "symbol": symbol,
        "stored": True,
        "source": source,
        "name": info.name,
        "exchange": info.exchange,
        "currency": info.currency,
        "asset_type": info.asset_type,
        "sector": info.sector,
        "industry": info.industry,
    }
