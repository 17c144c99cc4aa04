"""Pure planning for market-data fetches: windows, incremental refresh, chunks, refetches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta

import msgspec

from service.core.trading_calendar import TradingCalendar
from workers.market_data.types import History

PERIOD_DAYS: dict[str, int | None] = {
    "1mo": 31,
    "3mo": 92,
    "6mo": 183,
    "1y": 366,
    "2y": 731,
    "5y": 1827,
    "max": None,
}
DEFAULT_PERIOD = "1y"
MAX_HISTORY_START = date(1970, 1, 1)


class Window(msgspec.Struct, frozen=True):
    """An inclusive date range to fetch."""

    start: date
    end: date


class StoredRange(msgspec.Struct, frozen=True):
    """The first and last stored bar dates of one symbol, and the date before which the
    provider has nothing (learned from an earlier fetch; None while unknown)."""

    first: date
    last: date
    first_available: date | None = None


def requested_window(
    *, period: str | None, start: date | None, end: date | None, today: date
) -> Window:
    """The window a request asks for: explicit dates win, else `period` (default 1y) to today."""
    last = min(end or today, today)
    if start is not None:
        if start > last:
            raise ValueError("start must not be after end")
        return Window(start, last)
    name = period or DEFAULT_PERIOD
    if name not in PERIOD_DAYS:
        raise ValueError(f"unknown period {name!r}; expected one of {', '.join(PERIOD_DAYS)}")
    days = PERIOD_DAYS[name]
    return Window(MAX_HISTORY_START if days is None else last - timedelta(days=days), last)


def first_session_on_or_after(day: date, calendar: TradingCalendar) -> date:
    """The first trading day that is not before `day`."""
    return day if calendar.is_trading_day(day) else calendar.next_trading_day_after(day)


def covers_start(wanted: Window, stored: StoredRange, *, calendar: TradingCalendar) -> bool:
    """Whether the stored history reaches back to the start of `wanted`: its first bar is on
    or before the first session of `wanted` (a window may start on a weekend or holiday), or
    on or before the first date the provider has (it cannot give more), and its last bar
    is not before the start (no gap)."""
    if stored.last < wanted.start:
        return False
    covered_from = first_session_on_or_after(wanted.start, calendar)
    if stored.first_available is not None:
        covered_from = max(covered_from, stored.first_available)
    return stored.first <= covered_from


def incremental_window(
    wanted: Window,
    stored: StoredRange | None,
    *,
    overlap_days: int,
    calendar: TradingCalendar,
) -> Window:
    """What still needs fetching: from the last stored date minus `overlap_days` when the
    stored history already covers the start of `wanted`, else all of `wanted`.

    Providers correct recent bars, hence the overlap.
    """
    if stored is None or not covers_start(wanted, stored, calendar=calendar):
        return wanted
    resume = stored.last - timedelta(days=overlap_days)
    if resume > wanted.end:
        return Window(wanted.end, wanted.end)
    return Window(max(wanted.start, resume), wanted.end)


def first_available_from(
    fetched: Window,
    *,
    first_bar: date | None,
    stored: StoredRange | None,
    calendar: TradingCalendar,
) -> date | None:
    """The date before which the provider has no history, when a fetch shows it: the fetch
    started before every stored bar and its first bar came later than the first session of
    its window. None when the fetch shows nothing of the kind."""
    if first_bar is None:
        return None
    if stored is not None and fetched.start >= stored.first:
        return None
    if first_bar <= first_session_on_or_after(fetched.start, calendar):
        return None
    return first_bar


def needs_refetch(
    history: History,
    *,
    window: Window,
    wanted: Window,
    known_splits: Iterable[date],
    known_dividends: Iterable[date],
) -> bool:
    """Whether an incremental fetch revealed a split or dividend we had not stored, so the
    symbol's stored history (adjusted before that event) must be fetched again in full."""
    if window.start <= wanted.start:
        return False
    new_splits = {s.date for s in history.splits} - set(known_splits)
    new_dividends = {d.date for d in history.dividends} - set(known_dividends)
    return bool(new_splits or new_dividends)


def withdrawn_dividends(history: History, *, window: Window, stored: Iterable[date]) -> list[date]:
    """The stored dividend ex-dates the provider, answering in full for `window`, no longer
    reports: those inside both `window` and the span of the bars it returned (it showed it
    has data there), less every ex-date it reported. None when its listing of dividends may
    be truncated or it returned no bars: an answer that may be partial withdraws nothing."""
    if not history.dividends_complete or not history.bars:
        return []
    first = max(window.start, history.bars[0].date)
    last = min(window.end, history.bars[-1].date)
    reported = {d.date for d in history.dividends}
    return sorted(day for day in set(stored) if first <= day <= last and day not in reported)


def chunked(symbols: Sequence[str], size: int) -> list[list[str]]:
    """`symbols` in consecutive chunks of at most `size`."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return [list(symbols[i : i + size]) for i in range(0, len(symbols), size)]


REQUESTS_PER_SYMBOL = {"yahoo": 1, "polygon": 3, "tiingo": 1}
CHUNK_SHARE_OF_TIME_LIMIT = 4


def chunk_size_for(
    *, configured: int, provider: str, request_interval: float, time_limit: float
) -> int:
    """Symbols per chunk: the configured size, shrunk so a chunk paced by `provider`'s rate
    needs at most a quarter of the task time limit."""
    seconds_per_symbol = request_interval * REQUESTS_PER_SYMBOL.get(provider, 1)
    fits = int(time_limit / CHUNK_SHARE_OF_TIME_LIMIT / seconds_per_symbol)
    return max(1, min(configured, fits))


def helper_count(chunks: int, *, max_helpers: int) -> int:
    """How many helper tasks to publish for `chunks` chunks (the parent works too)."""
    return max(0, min(chunks - 1, max_helpers))
