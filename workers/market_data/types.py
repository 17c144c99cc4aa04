"""The market-data vocabulary every provider, planner and store speaks.

Price semantics are pinned here once: `close` is split-adjusted and not
dividend-adjusted; `adj_close` is split- and dividend-adjusted.
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec

__all__ = ["AssetInfo", "Bar", "Dividend", "History", "Quote", "Split"]
# `Dividend.date` shadows the type inside the class body.
_Date = date


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    """One daily bar on an exchange date: close split-adjusted, adj_close also dividend-adjusted."""

    date: date
    open: float | None
    high: float | None
    low: float | None
    close: float
    adj_close: float | None
    volume: int | None


class Dividend(msgspec.Struct, frozen=True, kw_only=True):
    """A cash dividend per share, by ex-date, with its payment date when the provider gives
    one (never before the ex-date)."""

    date: date
    amount: float
    pay_date: _Date | None = None


class Split(msgspec.Struct, frozen=True, kw_only=True):
    """A split: `numerator` new shares for every `denominator` old ones, from `date`."""

    date: date
    numerator: float
    denominator: float


class History(msgspec.Struct, frozen=True, kw_only=True):
    """Daily bars plus the corporate actions a provider reported for a window.

    `dividends_complete` is False when the provider's answer may have left dividends of the
    window out (a truncated listing): then no stored dividend may be taken as withdrawn.
    """

    symbol: str
    bars: list[Bar]
    dividends: list[Dividend] = []
    splits: list[Split] = []
    currency: str | None = None
    dividends_complete: bool = True


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """The latest price of one symbol."""

    symbol: str
    price: float
    market_time: datetime | None
    currency: str | None = None


class AssetInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Reference data of one asset; unknown fields are None."""

    symbol: str
    name: str | None = None
    exchange: str | None = None
    currency: str | None = None
    asset_type: str | None = None
    sector: str | None = None
    industry: str | None = None
    country: str | None = None
    description: str | None = None
