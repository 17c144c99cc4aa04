"""The NYSE trading calendar: which dates trade, and when they close.

Holidays and 13:00 early closes come from the `holidays` package; sudden
closures (a national day of mourning, say) come from an override list that
callers load from Postgres (`market_closures`) and pass in. Pure and cheap:
a calendar is a value, and lookups are cached per year.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

EXCHANGE_TZ = ZoneInfo("America/New_York")
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)


@lru_cache(maxsize=64)
def _nyse_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays("NYSE", years=year).keys())


@lru_cache(maxsize=64)
def _nyse_early_closes(year: int) -> frozenset[date]:
    half_days = holidays.financial_holidays("NYSE", years=year, categories=(holidays.HALF_DAY,))
    return frozenset(half_days.keys())


def load_holiday_tables(*, around: date) -> None:
    """Build the holiday and early-close tables for the years around `around` now.

    The first lookup in a process costs about a second: the `holidays` package assembles
    its NYSE calendar lazily. A long-running process calls this at start-up (a worker before
    it forks, so its children inherit the tables), so no task or request pays for it on an
    event loop, where it would stall every coroutine, rate-limited requests included.
    """
    for year in range(around.year - 1, around.year + 2):
        _nyse_holidays(year)
        _nyse_early_closes(year)


class TradingCalendar:
    """NYSE sessions, with extra closures (`closures`) and unscheduled early closes
    (`early_closes`, day -> local closing time) layered on top of the published ones.
    Calendars with the same overrides are equal (and hash alike, for caches)."""

    __slots__ = ("_closures", "_early_closes")

    def __init__(
        self, *, closures: Iterable[date] = (), early_closes: Mapping[date, time] | None = None
    ) -> None:
        self._closures = frozenset(closures)
        self._early_closes = tuple(sorted((early_closes or {}).items()))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TradingCalendar)
            and self._closures == other._closures
            and self._early_closes == other._early_closes
        )

    def __hash__(self) -> int:
        return hash((self._closures, self._early_closes))

    def is_trading_day(self, day: date) -> bool:
        """True when NYSE holds a session on `day`."""
        return (
            day.weekday() < 5 and day not in _nyse_holidays(day.year) and day not in self._closures
        )

    def close_time(self, day: date) -> time | None:
        """The session's close in exchange time (13:00 on early-close days); None if closed."""
        if not self.is_trading_day(day):
            return None
        for early_day, closing in self._early_closes:
            if early_day == day:
                return closing
        return EARLY_CLOSE if day in _nyse_early_closes(day.year) else REGULAR_CLOSE

    def close_at(self, day: date) -> datetime | None:
        """The session's closing instant (UTC); None when `day` does not trade."""
        closing = self.close_time(day)
        if closing is None:
            return None
        return datetime.combine(day, closing, tzinfo=EXCHANGE_TZ).astimezone(UTC)

    def last_completed_session(self, now: datetime) -> date:
        """The latest trading day whose session had closed by `now` (an aware instant)."""
        day = self.last_trading_day_on_or_before(now.astimezone(EXCHANGE_TZ).date())
        closed = self.close_at(day)
        if closed is not None and closed > now:
            day = self.last_trading_day_on_or_before(day - timedelta(days=1))
        return day

    def open_session(self, now: datetime) -> date | None:
        """The trading day whose regular session is running at `now`, or None."""
        local = now.astimezone(EXCHANGE_TZ)
        closed = self.close_at(local.date())
        opened = datetime.combine(local.date(), REGULAR_OPEN, tzinfo=EXCHANGE_TZ)
        if closed is None or not opened <= now < closed:
            return None
        return local.date()

    def is_early_close(self, day: date) -> bool:
        """True on a trading day that closes before 16:00."""
        closing = self.close_time(day)
        return closing is not None and closing < REGULAR_CLOSE

    def trading_days(self, start: date, end: date) -> list[date]:
        """Every trading day in [start, end], in order."""
        return list(self.iter_trading_days(start, end))

    def iter_trading_days(self, start: date, end: date) -> Iterator[date]:
        """Yield every trading day in [start, end], in order."""
        day = start
        while day <= end:
            if self.is_trading_day(day):
                yield day
            day += timedelta(days=1)

    def last_trading_day_on_or_before(self, day: date) -> date:
        """The latest trading day that is not after `day`."""
        while not self.is_trading_day(day):
            day -= timedelta(days=1)
        return day

    def next_trading_day_after(self, day: date) -> date:
        """The earliest trading day strictly after `day`."""
        day += timedelta(days=1)
        while not self.is_trading_day(day):
            day += timedelta(days=1)
        return day


NYSE = TradingCalendar()
