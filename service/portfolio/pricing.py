"""Which price values a position, and whether it is stale (pure).

A position is valued at its latest quote when that quote traded after the last
stored close, and otherwise at the last close. A close is dated by its session
and timed at that session's closing instant (13:00 on early-close days), so a
quote stamped at 16:00 on the day whose close is already stored loses to the
official close. A quote without a market time cannot be placed against the
close and is not used.

A price is stale when it is older than the close of the last session completed
at the instant the valuation is for: the dashboard flags it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from service.core.trading_calendar import EXCHANGE_TZ, REGULAR_CLOSE, TradingCalendar

PriceSource = Literal["quote", "close"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredQuote:
    """A latest quote as stored: its price and when it traded."""

    price: Decimal
    market_time: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """The price a position is valued at, and where it came from."""

    value: Decimal
    time: datetime
    source: PriceSource


def close_instant(day: date, calendar: TradingCalendar) -> datetime:
    """When the close of `day` was set: its session's end (16:00 for a day the calendar no
    longer trades, such as a closure recorded after the fact)."""
    closed = calendar.close_at(day)
    if closed is not None:
        return closed
    return datetime.combine(day, REGULAR_CLOSE, tzinfo=EXCHANGE_TZ)


def best_price(
    *,
    close: tuple[date, Decimal] | None,
    quote: StoredQuote | None,
    calendar: TradingCalendar,
) -> Price | None:
    """The quote if it traded after the last close, else the close; None if neither exists."""
    closed_at = close_instant(close[0], calendar) if close is not None else None
    traded = None if quote is None else quote.market_time
    if quote is not None and traded is not None and (closed_at is None or traded > closed_at):
        return Price(value=quote.price, time=traded, source="quote")
    if close is None or closed_at is None:
        return None
    return Price(value=close[1], time=closed_at, source="close")


def freshness_reference(*, as_of: date, now: datetime) -> datetime:
    """The instant a valuation `as_of` a date is for: `now` for today (or later), else the
    end of that day in New York."""
    end_of_day = datetime.combine(as_of + timedelta(days=1), time(), tzinfo=EXCHANGE_TZ)
    return min(now, end_of_day)


def stale_before(reference: datetime, calendar: TradingCalendar) -> datetime:
    """Prices older than this are stale at `reference`: the last completed session's close."""
    return close_instant(calendar.last_completed_session(reference), calendar)
