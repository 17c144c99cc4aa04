"""Request and response bodies of the task API, validated by msgspec at the edge.

Each submit body turns into the Celery task's keyword arguments with `task_kwargs()`.
Cross-field rules raise `ValueError("<field>: <message>")` so the problem details can
name the field.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec

SYMBOL_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9.\-=^]{0,14}$"
Symbol = Annotated[
    str,
    msgspec.Meta(
        pattern=SYMBOL_PATTERN,
        description="Ticker, e.g. AAPL, BRK.B or ^GSPC (upper-cased by the API).",
        examples=["AAPL"],
    ),
]
Symbols = Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=5000)]
Period = Literal["1mo", "3mo", "6mo", "1y", "2y", "5y", "max"]
Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]
Date = date  # SnapshotRequest has a field named `date`
Id = Annotated[int, msgspec.Meta(ge=1, le=2**62)]
IdList = Annotated[list[Id], msgspec.Meta(min_length=1, max_length=1000)]


def _normalise_symbols(symbols: list[str]) -> list[str]:
    """Upper-case and drop duplicates, keeping first-seen order."""
    return list(dict.fromkeys(symbol.upper() for symbol in symbols))


def _check_range(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise ValueError("end: must be on or after start")


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for request bodies: unknown fields are rejected."""


class MarketDataRequest(Body):
    """Daily history for many symbols, by `period` (default 1y) or by `start`/`end`."""

    symbols: Symbols
    period: Period | None = None
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        self.symbols = _normalise_symbols(self.symbols)
        if self.period is not None and (self.start is not None or self.end is not None):
            raise ValueError("period: give either period or start/end, not both")
        if self.start is None and self.end is not None:
            raise ValueError("start: required when end is given")
        _check_range(self.start, self.end)
        if self.period is None and self.start is None:
            self.period = "1y"

    def task_kwargs(self) -> dict[str, Any]:
        """The kwargs of `fetch_market_data`."""
        return _without_none(
            {
                "symbols": self.symbols,
                "period": self.period,
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
            }
        )


class PortfolioPricesRequest(Body):
    """Latest prices for the given portfolios or symbols; empty: all the caller's portfolios."""

    portfolio_ids: IdList | None = None
    symbols: Symbols | None = None

    def __post_init__(self) -> None:
        if self.portfolio_ids is not None and self.symbols is not None:
            raise ValueError("symbols: give either portfolio_ids or symbols, not both")
        if self.symbols is not None:
            self.symbols = _normalise_symbols(self.symbols)
        if self.portfolio_ids is not None:
            self.portfolio_ids = sorted(set(self.portfolio_ids))

    def task_kwargs(self) -> dict[str, Any]:
        """The kwargs of `update_portfolio_prices` (the owner is added by the API)."""
        return _without_none({"portfolio_ids": self.portfolio_ids, "symbols": self.symbols})


class AssetInfoRequest(Body):
    """Reference data for one asset."""

    symbol: Symbol

    def __post_init__(self) -> None:
        self.symbol = self.symbol.upper()

    def task_kwargs(self) -> dict[str, Any]:
        """The kwargs of `fetch_asset_info`."""
        return {"symbol": self.symbol}


class PerformanceRequest(Body):
    """Performance metrics of one portfolio (or all the caller's) over `days` or `start`/`end`."""

    portfolio_id: Id | None = None
    user_id: Id | None = msgspec.field(default=None)
    days: Days | None = None
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.days is not None and (self.start is not None or self.end is not None):
            raise ValueError("days: give either days or start/end, not both")
        if self.start is None and self.end is not None:
            raise ValueError("start: required when end is given")
        _check_range(self.start, self.end)
        if self.days is None and self.start is None:
            self.days = 30

    def task_kwargs(self) -> dict[str, Any]:
        """The kwargs of `calculate_portfolio_performance` (owner set by the API)."""
        return _without_none(
            {
                "portfolio_id": self.portfolio_id,
                "days": self.days,
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
            }
        )


class SnapshotRequest(Body):
    """Snapshots for the given portfolios (default: all the caller's) on a date or a range."""

    portfolio_ids: IdList | None = None
    date: Date | None = None
    start: Date | None = None
    end: Date | None = None

    def __post_init__(self) -> None:
        if self.date is not None and (self.start is not None or self.end is not None):
            raise ValueError("date: give either date or start/end, not both")
        if (self.start is None) != (self.end is None):
            raise ValueError("start: start and end go together")
        _check_range(self.start, self.end)
        if self.start is not None and self.end is not None and (self.end - self.start).days > 3660:
            raise ValueError("start: a backfill covers at most ten years")
        if self.portfolio_ids is not None:
            self.portfolio_ids = sorted(set(self.portfolio_ids))

    def task_kwargs(self) -> dict[str, Any]:
        """The kwargs of `create_portfolio_snapshot` (owner set by the API)."""
        return _without_none(
            {
                "portfolio_ids": self.portfolio_ids,
                "date": self.date.isoformat() if self.date else None,
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
            }
        )


class ReportRequest(Body):
    """A report for one portfolio over `days`, as HTML or JSON."""

    portfolio_id: Id
    days: Days = 365
    format: Literal["html", "json"] = "html"

    def task_kwargs(self) -> dict[str, Any]:
        """The kwargs of `generate_portfolio_report`."""
        return {"portfolio_id": self.portfolio_id, "days": self.days, "format": self.format}


class Submitted(msgspec.Struct, frozen=True):
    """A submit's answer: 202 `submitted`, or 200 `existing` for an unfinished duplicate."""

    task_id: str
    status: Literal["submitted", "existing"]


class CancelAccepted(msgspec.Struct, frozen=True):
    """A cancel's answer: the task's state right after the request."""

    task_id: str
    state: str


class WorkerInfo(msgspec.Struct, frozen=True):
    """One Celery worker as `celery inspect` sees it."""

    hostname: str
    pool: str | None
    concurrency: int | None
    active: int
    processed: int
    queues: list[str]
    heartbeat_age_seconds: float | None
