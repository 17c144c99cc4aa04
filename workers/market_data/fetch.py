"""Fetch one chunk of symbols concurrently and stream the results into bulk writes.

For each symbol: plan the incremental window, fetch it through the failover
chain, refetch the whole stored range when a new split or dividend shows up,
then buffer its rows, and the stored dividends of the fetched window the provider no
longer reports for deletion; the buffer is written (bars, events, fetch state) in
one transaction whenever it holds `batch_rows` bars, so memory stays flat
however many symbols a chunk has.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import asyncpg
import msgspec

from service.core.clock import Clock
from service.core.logs import get_logger
from service.core.trading_calendar import NYSE, TradingCalendar
from workers import metrics
from workers.db_retry import in_transaction
from workers.market_data.failover import Failover, SymbolFailed, count_symbol_failure
from workers.market_data.plan import (
    StoredRange,
    Window,
    first_available_from,
    incremental_window,
    needs_refetch,
    withdrawn_dividends,
)
from workers.market_data.providers.base import ErrorKind
from workers.market_data.store import (
    BarRow,
    bar_rows,
    dividend_rows,
    invalidate_snapshots_after_splits,
    known_events,
    record_currencies,
    record_failures,
    record_successes,
    split_rows,
    stored_ranges,
    upsert_bars,
    upsert_events,
)
from workers.market_data.types import History

log = get_logger(__name__)
DEFAULT_BATCH_ROWS = 20_000
DEFAULT_SYMBOL_CONCURRENCY = 64


class Failure(msgspec.Struct, frozen=True):
    """A symbol that could not be fetched, and why."""

    symbol: str
    reason: str


class FetchResult(msgspec.Struct, kw_only=True):
    """The outcome of a fetch: what was asked, fetched, written and what failed."""

    requested: int = 0
    fetched: int = 0
    rows_written: int = 0
    failed: list[Failure] = msgspec.field(default_factory=list)

    def merge(self, other: FetchResult) -> None:
        """Add `other`'s counts and failures to this result."""
        self.requested += other.requested
        self.fetched += other.fetched
        self.rows_written += other.rows_written
        self.failed.extend(other.failed)


@dataclass
class _Batch:
    bars: list[BarRow] = field(default_factory=list)
    dividends: list[tuple[object, ...]] = field(default_factory=list)
    withdrawn: list[tuple[str, date]] = field(default_factory=list)
    splits: list[tuple[object, ...]] = field(default_factory=list)
    # (symbol, last stored date, provider, first date the provider has, when learned)
    successes: list[tuple[str, date | None, str, date | None]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    new_splits: list[tuple[str, date]] = field(default_factory=list)
    currencies: list[tuple[str, str]] = field(default_factory=list)

    def clear(self) -> None:
        for rows in (
            self.currencies,
            self.bars,
            self.dividends,
            self.withdrawn,
            self.splits,
            self.successes,
            self.failures,
            self.new_splits,
        ):
            rows.clear()


async def _write(pool: asyncpg.Pool, batch: _Batch, *, clock: Clock, retry_seconds: float) -> int:
    """Write a batch in one transaction (rerun whole if Postgres goes away); return how many
    daily bars were inserted or changed."""

    events = 0

    async def write(connection: asyncpg.Connection) -> int:
        nonlocal events
        changed = await upsert_bars(connection, batch.bars)
        await record_currencies(connection, batch.currencies)
        events = await upsert_events(
            connection,
            dividends=batch.dividends,
            splits=batch.splits,
            withdrawn=batch.withdrawn,
        )
        await invalidate_snapshots_after_splits(connection, batch.new_splits)
        await record_successes(connection, batch.successes, now=clock())
        await record_failures(connection, batch.failures, now=clock())
        return changed

    changed = await in_transaction(pool, write, retry_seconds=retry_seconds, what="fetch batch")
    # Counted once committed, so a transaction rerun after a lost connection counts once.
    metrics.BARS_WRITTEN.inc(changed)
    metrics.ROWS_WRITTEN.labels(table="daily_prices").inc(changed)
    metrics.ROWS_WRITTEN.labels(table="corporate_actions").inc(events)
    return changed


@dataclass(frozen=True, slots=True)
class _Outcome:
    symbol: str
    history: History | None
    provider: str
    failure: SymbolFailed | None
    window: Window | None = None


class ChunkFetcher:
    """Fetches and stores one list of symbols for one requested window."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        failover: Failover,
        overlap_days: int,
        clock: Clock,
        calendar: TradingCalendar = NYSE,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        concurrency: int = DEFAULT_SYMBOL_CONCURRENCY,
        retry_seconds: float = 0.0,
    ) -> None:
        self._pool = pool
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._calendar = calendar
        self._failover = failover
        self._overlap_days = overlap_days
        self._batch_rows = batch_rows
        self._concurrency = concurrency

    async def run(
        self,
        symbols: Sequence[str],
        wanted: Window,
        *,
        on_symbol: Callable[[], Awaitable[None]] | None = None,
        before_write: Callable[[], Awaitable[None]] | None = None,
    ) -> FetchResult:
        """Fetch and store `symbols` over `wanted`; call `on_symbol` as each one finishes and
        `before_write` before each batch is written (it raises to stop the fetch)."""

        async def read(
            connection: asyncpg.Connection,
        ) -> tuple[dict[str, StoredRange], tuple[dict[str, set[date]], dict[str, set[date]]]]:
            return await stored_ranges(connection, symbols), await known_events(connection, symbols)

        ranges, (splits, dividends) = await in_transaction(
            self._pool, read, retry_seconds=self._retry_seconds, what="stored ranges"
        )
        slots = asyncio.Semaphore(self._concurrency)

        async def one(symbol: str) -> _Outcome:
            async with slots:
                return await self._fetch_symbol(
                    symbol,
                    wanted,
                    stored=ranges.get(symbol),
                    known_splits=splits.get(symbol, set()),
                    known_dividends=dividends.get(symbol, set()),
                )

        result = FetchResult(requested=len(symbols))
        batch = _Batch()
        tasks = [asyncio.ensure_future(one(symbol)) for symbol in symbols]
        try:
            for next_done in asyncio.as_completed(tasks):
                outcome = await next_done
                self._add(
                    outcome,
                    batch,
                    result,
                    stored=ranges.get(outcome.symbol),
                    known_splits=splits.get(outcome.symbol, set()),
                    known_dividends=dividends.get(outcome.symbol, set()),
                )
                if len(batch.bars) >= self._batch_rows:
                    if before_write is not None:
                        await before_write()
                    result.rows_written += await _write(
                        self._pool, batch, clock=self._clock, retry_seconds=self._retry_seconds
                    )
                    batch.clear()
                if on_symbol is not None:
                    await on_symbol()
            if before_write is not None:
                await before_write()
            result.rows_written += await _write(
                self._pool, batch, clock=self._clock, retry_seconds=self._retry_seconds
            )
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
        return result

    def _add(
        self,
        outcome: _Outcome,
        batch: _Batch,
        result: FetchResult,
        *,
        stored: StoredRange | None,
        known_splits: set[date],
        known_dividends: set[date],
    ) -> None:
        if outcome.failure is not None or outcome.history is None:
            failure = outcome.failure
            reason = failure.reason if failure else "no data"
            kind = failure.kind if failure else ErrorKind.NOT_FOUND
            batch.failures.append((outcome.symbol, str(kind), reason))
            count_symbol_failure(failure, provider=outcome.provider)
            result.failed.append(Failure(symbol=outcome.symbol, reason=reason))
            return
        history, source = outcome.history, outcome.provider
        batch.bars.extend(bar_rows(outcome.symbol, history.bars, source=source))
        if history.currency:
            batch.currencies.append((outcome.symbol, history.currency))
        batch.dividends.extend(dividend_rows(history, source=source))
        if outcome.window is not None:
            gone = withdrawn_dividends(history, window=outcome.window, stored=known_dividends)
            batch.withdrawn.extend((outcome.symbol, day) for day in gone)
            if gone:
                log.info(
                    "dividends withdrawn",
                    symbol=outcome.symbol,
                    provider=source,
                    ex_dates=[day.isoformat() for day in gone],
                )
        batch.splits.extend(split_rows(history, source=source))
        fresh = [split.date for split in history.splits if split.date not in known_splits]
        if fresh:
            batch.new_splits.append((outcome.symbol, min(fresh)))
        last = history.bars[-1].date if history.bars else (stored.last if stored else None)
        first_available = (
            None
            if outcome.window is None
            else first_available_from(
                outcome.window,
                first_bar=history.bars[0].date if history.bars else None,
                stored=stored,
                calendar=self._calendar,
            )
        )
        batch.successes.append((outcome.symbol, last, source, first_available))
        result.fetched += 1

    async def _fetch_symbol(
        self,
        symbol: str,
        wanted: Window,
        *,
        stored: StoredRange | None,
        known_splits: set[date],
        known_dividends: set[date],
    ) -> _Outcome:
        window = incremental_window(
            wanted, stored, overlap_days=self._overlap_days, calendar=self._calendar
        )
        try:
            history, provider = await self._failover.history(
                symbol, start=window.start, end=window.end
            )
            if stored is not None and needs_refetch(
                history,
                window=window,
                wanted=wanted,
                known_splits=known_splits,
                known_dividends=known_dividends,
            ):
                full = Window(min(stored.first, wanted.start), wanted.end)
                log.info("corporate action: refetching history", symbol=symbol, start=full.start)
                history, provider = await self._failover.history(
                    symbol, start=full.start, end=full.end
                )
                window = full
        except SymbolFailed as failed:
            return _Outcome(symbol, None, "", failed)
        if not history.bars and stored is None:
            return _Outcome(symbol, None, provider, None)
        return _Outcome(symbol, history, provider, None, window)
