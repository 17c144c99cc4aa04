"""The keyword arguments of the analytics tasks, validated as msgspec Structs.

The task bodies convert their kwargs through these; the API's submit routes
can validate a request body with the same Structs before publishing.
"""

from __future__ import annotations

import datetime as dt
from datetime import date, timedelta
from typing import Annotated, Literal

import msgspec

from service.core.trading_calendar import NYSE

MAX_WINDOW_DAYS = 366 * 30
Id = Annotated[int, msgspec.Meta(ge=1)]
Days = Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOW_DAYS)]


class SnapshotParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """`create_portfolio_snapshot` kwargs: one `date`, or a `start`/`end` range, or neither."""

    portfolio_ids: Annotated[list[Id], msgspec.Meta(max_length=100_000)] | None = None
    date: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    user_id: Id | None = None

    def __post_init__(self) -> None:
        if self.date is not None and (self.start is not None or self.end is not None):
            raise ValueError("give either date or start/end, not both")
        if self.end is not None and self.start is None:
            raise ValueError("end needs start")
        if self.start and self.end and self.start > self.end:
            raise ValueError("start must not be after end")
        if self.start and (self.end or self.start) - self.start > timedelta(MAX_WINDOW_DAYS):
            raise ValueError(f"a range spans at most {MAX_WINDOW_DAYS} days")

    def valuation_dates(self, *, today: dt.date) -> list[dt.date]:
        """Trading days of the range, or the one date asked (a weekend date carries Friday)."""
        if self.start is not None:
            return NYSE.trading_days(self.start, self.end or today)
        return [self.date or NYSE.last_trading_day_on_or_before(today)]


class PerformanceParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """`calculate_portfolio_performance` kwargs: one portfolio or all of a user's; a window."""

    portfolio_id: Id | None = None
    user_id: Id | None = None
    days: Days | None = None
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.portfolio_id is None and self.user_id is None:
            raise ValueError("give portfolio_id or user_id")
        if self.days is not None and self.start is not None:
            raise ValueError("give either days or start, not both")
        if self.start and self.end and self.start > self.end:
            raise ValueError("start must not be after end")

    def window(self, *, today: date) -> tuple[date, date]:
        """(base, end): the first and last trading days of the window."""
        return performance_window(days=self.days, start=self.start, end=self.end, today=today)


class ReportParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """`generate_portfolio_report` kwargs."""

    portfolio_id: Id
    days: Days = 365
    format: Literal["json", "html"] = "html"
    user_id: Id | None = None


def performance_window(
    *, days: int | None, start: date | None, end: date | None, today: date
) -> tuple[date, date]:
    """`days` counts calendar days back from the last trading day on or before `end` (today);
    the window's first trading day on or after that is the base."""
    last = NYSE.last_trading_day_on_or_before(min(end or today, today))
    first = start if start is not None else last - timedelta(days=days or 365)
    base = first if NYSE.is_trading_day(first) else NYSE.next_trading_day_after(first)
    return min(base, last), last
